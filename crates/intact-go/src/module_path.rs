//! Module, import and file path rules and the `!` case-encoding (`golang.org/x/mod/module`).
//!
//! Proxies serve from case-insensitive stores, so the protocol never needs two casings of a
//! URL: every upper-case letter `X` in a path or version travels as `!x`. Decoding must be
//! strict (no upper case, no `!` before a non-lower-case letter) so that each module has one
//! escaped spelling, and `github.com/Foo/bar` and `github.com/foo/bar` stay two modules.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use crate::error::{GoError, PathKind};
use crate::semver;

/// Windows reserves these names (before the first dot, any case) for devices.
const BAD_WINDOWS_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Checks a module path (`module.CheckPath`): a valid import path whose first element is a
/// lower-case domain-like name with a dot, no element starting with a dot, no `+`, and a
/// well-formed major-version suffix (`/vN` with N >= 2, or gopkg.in's `.vN`).
pub fn check_path(path: &str) -> Result<(), GoError> {
    let err = |reason: &str| GoError::path(PathKind::Module, path, reason);
    check_general(path, PathKind::Module).map_err(|r| err(&r))?;
    let first = path.split('/').next().unwrap_or_default();
    if first.is_empty() {
        return Err(err("leading slash"));
    }
    if !first.contains('.') {
        return Err(err("missing dot in first path element"));
    }
    if first.starts_with('-') {
        return Err(err("leading dash in first path element"));
    }
    if let Some(c) = first
        .chars()
        .find(|&c| !(c == '-' || c == '.' || c.is_ascii_digit() || c.is_ascii_lowercase()))
    {
        return Err(err(&format!("invalid char {c:?} in first path element")));
    }
    if split_path_version(path).is_none() {
        return Err(err("invalid version"));
    }
    Ok(())
}

/// Checks a package import path (`module.CheckImportPath`).
pub fn check_import_path(path: &str) -> Result<(), GoError> {
    check_general(path, PathKind::Import).map_err(|r| GoError::path(PathKind::Import, path, r))
}

/// Checks a slash-separated file path inside a module (`module.CheckFilePath`): what names in
/// a module zip may be. It allows Unicode letters, spaces and more punctuation than import
/// paths, but no `..`, no empty elements, no `\`, `:` or shell metacharacters.
pub fn check_file_path(path: &str) -> Result<(), GoError> {
    check_general(path, PathKind::File).map_err(|r| GoError::path(PathKind::File, path, r))
}

/// The checks shared by all three kinds; the reason does not repeat the path.
fn check_general(path: &str, kind: PathKind) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty string".into());
    }
    if path.starts_with('-') && kind != PathKind::File {
        return Err("leading dash".into());
    }
    if path.contains("//") {
        return Err("double slash".into());
    }
    if path.ends_with('/') {
        return Err("trailing slash".into());
    }
    path.split('/').try_for_each(|elem| check_elem(elem, kind))
}

fn check_elem(elem: &str, kind: PathKind) -> Result<(), String> {
    if elem.is_empty() {
        return Err("empty path element".into());
    }
    if elem.bytes().all(|c| c == b'.') {
        return Err(format!("invalid path element {elem:?}"));
    }
    if elem.starts_with('.') && kind == PathKind::Module {
        return Err("leading dot in path element".into());
    }
    if elem.ends_with('.') {
        return Err("trailing dot in path element".into());
    }
    let char_ok = match kind {
        PathKind::Module => mod_path_ok,
        PathKind::Import => import_path_ok,
        PathKind::File => file_name_ok,
    };
    if let Some(c) = elem.chars().find(|&c| !char_ok(c)) {
        return Err(format!("invalid char {c:?}"));
    }
    let short = elem.split('.').next().unwrap_or_default();
    // The reserved names are ASCII, and no non-ASCII letter folds to an ASCII letter in them
    // (only K and S have such folds), so ASCII case-insensitivity is Unicode's here.
    if BAD_WINDOWS_NAMES.iter().any(|bad| bad.eq_ignore_ascii_case(short)) {
        return Err(format!("{short:?} disallowed as path element component on Windows"));
    }
    // Windows 8.3 short names (`PROGRA~1`) could alias another element; file names in a
    // zip are exempt because Go exempts them.
    if kind != PathKind::File
        && let Some((_, digits)) = short.rsplit_once('~')
        && !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
    {
        return Err("trailing tilde and digits in path element".into());
    }
    Ok(())
}

fn mod_path_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

fn import_path_ok(c: char) -> bool {
    mod_path_ok(c) || c == '+'
}

fn file_name_ok(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c)
    } else {
        // Go's unicode.IsLetter: categories Lu, Ll, Lt, Lm, Lo (not Rust's wider
        // is_alphabetic, which admits combining marks).
        c.general_category_group() == GeneralCategoryGroup::Letter
    }
}

/// Splits a module path into its prefix and major-version suffix (`module.SplitPathVersion`):
/// `("x.y/z", "/v2")` for `x.y/z/v2`, `("x.y/z", "")` for `x.y/z`, `("gopkg.in/yaml", ".v2")`
/// for `gopkg.in/yaml.v2`. `None` when the suffix is malformed (`/v1`, `/v0`, `/v2.0`, `/v02`,
/// a gopkg.in path without `.vN`).
pub fn split_path_version(path: &str) -> Option<(&str, &str)> {
    if path.starts_with("gopkg.in/") {
        return split_gopkg_in(path);
    }
    let b = path.as_bytes();
    let mut i = b.len();
    let mut dot = false;
    while i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
        dot |= b[i - 1] == b'.';
        i -= 1;
    }
    if i <= 1 || i == b.len() || b[i - 1] != b'v' || b[i - 2] != b'/' {
        return Some((path, ""));
    }
    let (prefix, major) = path.split_at(i - 2);
    if dot || major.len() <= 2 || major.as_bytes()[2] == b'0' || major == "/v1" {
        return None;
    }
    Some((prefix, major))
}

fn split_gopkg_in(path: &str) -> Option<(&str, &str)> {
    let b = path.as_bytes();
    let mut i = b.len();
    if path.ends_with("-unstable") {
        i -= "-unstable".len();
    }
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    // All gopkg.in paths must end in .vN for some N.
    if i <= 1 || b[i - 1] != b'v' || b[i - 2] != b'.' {
        return None;
    }
    let (prefix, major) = path.split_at(i - 2);
    if major.len() <= 2 || (major.as_bytes()[2] == b'0' && major != ".v0") {
        return None;
    }
    Some((prefix, major))
}

/// Checks that `version` may be a version of the module at `path` (the major-version rule of
/// `module.CheckPathMajor`, given the whole module path rather than its suffix): `x.y/z`
/// takes v0, v1 and `+incompatible` versions, `x.y/z/v2` takes v2 only, gopkg.in's `.v1`
/// also takes old `v0.0.0-` pseudo-versions.
///
/// Stricter than x/mod in one way: `+incompatible` is refused for a path with a major
/// suffix, as the go command's repository code refuses it (x/mod alone lets
/// `x.y/z/v2@v2.0.0+incompatible` through).
pub fn check_path_major(version: &str, path: &str) -> Result<(), GoError> {
    let (_, path_major) =
        split_path_version(path).ok_or_else(|| GoError::path(PathKind::Module, path, "invalid version"))?;
    if !path_major.is_empty() && semver::is_incompatible(version) {
        return Err(GoError::version(
            version,
            format!("+incompatible suffix not allowed: module path {path} has a major version suffix"),
        ));
    }
    let path_major = match path_major.strip_suffix("-unstable") {
        Some(m) if m.starts_with(".v") => m,
        _ => path_major,
    };
    // Early vgo generated v0.0.0- pseudo-versions for gopkg.in .v1 paths, and published
    // go.mod files still require them.
    if version.starts_with("v0.0.0-") && path_major == ".v1" {
        return Ok(());
    }
    let m = semver::major(version).unwrap_or_default();
    let want = if path_major.is_empty() {
        if m == "v0" || m == "v1" || semver::is_incompatible(version) {
            return Ok(());
        }
        "v0 or v1"
    } else {
        let want = &path_major[1..];
        if m == want {
            return Ok(());
        }
        want
    };
    Err(GoError::version(
        version,
        format!("should be {want}, not {m}, for module {path}"),
    ))
}

/// Checks a module path and version pair (`module.Check`): a valid path, a valid semantic
/// version, and a major version that fits the path.
pub fn check(path: &str, version: &str) -> Result<(), GoError> {
    check_path(path)?;
    if !semver::is_valid(version) {
        return Err(GoError::version(version, "not a semantic version"));
    }
    check_path_major(version, path)
}

/// `module.CanonicalVersion`: `semver::canonical`, but keeping a `+incompatible` suffix
/// because it is part of the version's identity. `None` if `v` is invalid.
pub fn canonical_version(v: &str) -> Option<String> {
    let mut c = semver::canonical(v)?;
    if semver::is_incompatible(v) {
        c.push_str("+incompatible");
    }
    Some(c)
}

/// Checks that `version` is canonical and fits `path`: what a module zip's `path@version`
/// must be, and what a proxy should store a version under.
pub fn check_canonical(path: &str, version: &str) -> Result<(), GoError> {
    match canonical_version(version) {
        Some(c) if c == version => check(path, version),
        Some(c) => Err(GoError::version(version, format!("not canonical (should be {c:?})"))),
        None => Err(GoError::version(version, "not a semantic version")),
    }
}

/// The escaped form of a module path for URLs and file names (`module.EscapePath`):
/// `github.com/Azure/azure-sdk` becomes `github.com/!azure/azure-sdk`. The path must be valid.
pub fn escape_path(path: &str) -> Result<String, GoError> {
    check_path(path)?;
    escape_string(path).ok_or_else(|| GoError::path(PathKind::Module, path, "cannot be escaped"))
}

/// The escaped form of a version (`module.EscapeVersion`). Versions need not be semver here
/// (queries like `master` travel too) but must be a valid ASCII file name without `!`.
pub fn escape_version(version: &str) -> Result<String, GoError> {
    check_elem(version, PathKind::File)
        .map_err(|r| GoError::version(version, format!("disallowed version string: {r}")))?;
    escape_string(version).ok_or_else(|| GoError::version(version, "disallowed version string"))
}

/// `None` for `!` or non-ASCII input, which could not be decoded unambiguously.
fn escape_string(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c == '!' || !c.is_ascii() {
            return None;
        }
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Decodes an escaped module path (`module.UnescapePath`), rejecting anything that is not the
/// one escaped spelling of a valid module path.
pub fn unescape_path(escaped: &str) -> Result<String, GoError> {
    let path = unescape_string(escaped)
        .ok_or_else(|| GoError::path(PathKind::Module, escaped, "invalid escaped module path"))?;
    check_path(&path).map_err(|e| match e {
        GoError::InvalidPath { reason, .. } => GoError::path(
            PathKind::Module,
            escaped,
            format!("invalid escaped module path: {reason}"),
        ),
        other => other,
    })?;
    Ok(path)
}

/// Decodes an escaped version (`module.UnescapeVersion`).
pub fn unescape_version(escaped: &str) -> Result<String, GoError> {
    let v = unescape_string(escaped).ok_or_else(|| GoError::version(escaped, "invalid escaped version"))?;
    check_elem(&v, PathKind::File).map_err(|r| GoError::version(escaped, format!("invalid escaped version: {r}")))?;
    Ok(v)
}

/// `None` for non-ASCII, raw upper case, `!` before anything but `a`-`z`, or a trailing `!`.
fn unescape_string(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut bang = false;
    for c in escaped.chars() {
        if !c.is_ascii() {
            return None;
        }
        if bang {
            bang = false;
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            continue;
        }
        match c {
            '!' => bang = true,
            c if c.is_ascii_uppercase() => return None,
            c => out.push(c),
        }
    }
    (!bang).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    // (path, module ok, import ok, file ok), after golang.org/x/mod/module/module_test.go.
    const CHECK_PATH: &[(&str, bool, bool, bool)] = &[
        ("x.y/z", true, true, true),
        ("x.y", true, true, true),
        ("", false, false, false),
        ("/x.y/z", false, false, false),
        ("x./z", false, false, false),
        (".x/z", false, true, true),
        ("-x/z", false, false, true),
        ("x..y/z", true, true, true),
        ("x.y/z/../../w", false, false, false),
        ("x.y//z", false, false, false),
        ("x.y/z//w", false, false, false),
        ("x.y/z/", false, false, false),
        ("x.y/z/v0", false, true, true),
        ("x.y/z/v1", false, true, true),
        ("x.y/z/v2", true, true, true),
        ("x.y/z/v2.0", false, true, true),
        ("X.y/z", false, true, true),
        ("!x.y/z", false, false, true),
        ("_x.y/z", false, true, true),
        ("x.y!/z", false, false, true),
        ("x.y\"/z", false, false, false),
        ("x.y#/z", false, false, true),
        ("x.y$/z", false, false, true),
        ("x.y%/z", false, false, true),
        ("x.y&/z", false, false, true),
        ("x.y'/z", false, false, false),
        ("x.y(/z", false, false, true),
        ("x.y)/z", false, false, true),
        ("x.y*/z", false, false, false),
        ("x.y+/z", false, true, true),
        ("x.y,/z", false, false, true),
        ("x.y-/z", true, true, true),
        ("x.y./zt", false, false, false),
        ("x.y:/z", false, false, false),
        ("x.y;/z", false, false, false),
        ("x.y</z", false, false, false),
        ("x.y=/z", false, false, true),
        ("x.y>/z", false, false, false),
        ("x.y?/z", false, false, false),
        ("x.y@/z", false, false, true),
        ("x.y[/z", false, false, true),
        ("x.y\\/z", false, false, false),
        ("x.y]/z", false, false, true),
        ("x.y^/z", false, false, true),
        ("x.y_/z", false, true, true),
        ("x.y`/z", false, false, false),
        ("x.y{/z", false, false, true),
        ("x.y}/z", false, false, true),
        ("x.y~/z", false, true, true),
        ("x.y/z!", false, false, true),
        ("x.y/z\"", false, false, false),
        ("x.y/z#", false, false, true),
        ("x.y/z+", false, true, true),
        ("x.y/z-", true, true, true),
        ("x.y/z.t", true, true, true),
        ("x.y/z/t", true, true, true),
        ("x.y/z:", false, false, false),
        ("x.y/z_", true, true, true),
        ("x.y/z~", true, true, true),
        ("x.y/x.foo", true, true, true),
        ("x.y/aux.foo", false, false, false),
        ("x.y/prn", false, false, false),
        ("x.y/prn2", true, true, true),
        ("x.y/com", true, true, true),
        ("x.y/com1", false, false, false),
        ("x.y/com1.txt", false, false, false),
        ("x.y/calm1", true, true, true),
        ("x.y/z~", true, true, true),
        ("x.y/z~0", false, false, true),
        ("x.y/z~09", false, false, true),
        ("x.y/z09", true, true, true),
        ("x.y/z09~", true, true, true),
        ("x.y/z09~09z", true, true, true),
        ("x.y/z09~09z~09", false, false, true),
        ("github.com/!123/logrus", false, false, true),
        ("github.com/user/unicode/испытание", false, false, true),
        ("../x", false, false, false),
        ("./y", false, false, false),
        ("x:y", false, false, false),
        ("\\temp\\foo", false, false, false),
        (".gitignore", false, true, true),
        (".github/ISSUE_TEMPLATE", false, true, true),
        ("x☺y", false, false, false),
        ("bar.com/foo.", false, false, false),
        ("gopkg.in/yaml.v2", true, true, true),
        ("gopkg.in/yaml", false, true, true),
        ("gopkg.in/yaml.v0", true, true, true),
        ("gopkg.in/yaml.v02", false, true, true),
        ("gopkg.in/check.v1-unstable", true, true, true),
        ("example.com/some-Path/CamelCase", true, true, true),
        ("example.com:8080/x", false, false, false),
    ];

    #[test]
    fn check_path_vectors() {
        for &(path, module_ok, import_ok, file_ok) in CHECK_PATH {
            assert_eq!(
                check_path(path).is_ok(),
                module_ok,
                "check_path({path:?}): {:?}",
                check_path(path)
            );
            assert_eq!(
                check_import_path(path).is_ok(),
                import_ok,
                "check_import_path({path:?}): {:?}",
                check_import_path(path)
            );
            assert_eq!(
                check_file_path(path).is_ok(),
                file_ok,
                "check_file_path({path:?}): {:?}",
                check_file_path(path)
            );
        }
    }

    #[test]
    fn unicode_file_names_need_letters_not_marks() {
        assert!(check_file_path("dir/ÄÖÜ.go").is_ok());
        assert!(check_file_path("日本語/テスト.go").is_ok());
        // U+0301 COMBINING ACUTE ACCENT is alphabetic to Rust but not a letter to Go.
        assert!(check_file_path("e\u{301}.go").is_err());
        // U+2167 ROMAN NUMERAL EIGHT is a letter number (Nl), not a letter.
        assert!(check_file_path("\u{2167}.go").is_err());
        assert!(check_file_path("a\u{0}b").is_err());
        assert!(check_file_path("a\nb").is_err());
    }

    #[test]
    fn errors_name_the_path() {
        let e = check_path("x.y/z/../../w").unwrap_err().to_string();
        assert_eq!(e, r#"malformed module path "x.y/z/../../w": invalid path element "..""#);
        let e = check_path("rsc.io/quote/v1").unwrap_err().to_string();
        assert!(e.contains("invalid version"), "{e}");
        let e = check_path("Rsc.io/quote").unwrap_err().to_string();
        assert!(e.contains("'R'"), "{e}");
    }

    #[test]
    fn split_path_version_vectors() {
        for (prefix, major) in [
            ("x.y/z", ""),
            ("x.y/z", "/v2"),
            ("x.y/z", "/v3"),
            ("x.y/v", ""),
            ("gopkg.in/yaml", ".v0"),
            ("gopkg.in/yaml", ".v1"),
            ("gopkg.in/yaml", ".v2"),
            ("gopkg.in/yaml", ".v3"),
        ] {
            let path = format!("{prefix}{major}");
            assert_eq!(split_path_version(&path), Some((prefix, major)), "{path}");
        }
        for &(path, ..) in CHECK_PATH {
            if let Some((p, m)) = split_path_version(path) {
                assert_eq!(format!("{p}{m}"), path);
            }
        }
    }

    #[test]
    fn check_vectors() {
        // From TestCheck in x/mod/module/module_test.go.
        for (path, version, ok) in [
            ("rsc.io/quote", "0.1.0", false),
            ("rsc io/quote", "v1.0.0", false),
            ("github.com/go-yaml/yaml", "v0.8.0", true),
            ("github.com/go-yaml/yaml", "v1.0.0", true),
            ("github.com/go-yaml/yaml", "v2.0.0", false),
            ("github.com/go-yaml/yaml", "v2.1.5", false),
            ("github.com/go-yaml/yaml", "v3.0.0", false),
            ("github.com/go-yaml/yaml/v2", "v1.0.0", false),
            ("github.com/go-yaml/yaml/v2", "v2.0.0", true),
            ("github.com/go-yaml/yaml/v2", "v2.1.5", true),
            ("github.com/go-yaml/yaml/v2", "v3.0.0", false),
            ("gopkg.in/yaml.v0", "v0.8.0", true),
            ("gopkg.in/yaml.v0", "v1.0.0", false),
            ("gopkg.in/yaml.v0", "v2.0.0", false),
            ("gopkg.in/yaml.v1", "v0.8.0", false),
            ("gopkg.in/yaml.v1", "v1.0.0", true),
            ("gopkg.in/yaml.v1", "v2.0.0", false),
            ("gopkg.in/check.v1", "v0.0.0", false),
            ("gopkg.in/check.v1", "v0.0.0-20160102150405-abcdef123456", true),
            ("gopkg.in/check.v1-unstable", "v1.0.0", true),
            ("gopkg.in/yaml.v2", "v1.0.0", false),
            ("gopkg.in/yaml.v2", "v2.0.0", true),
            ("gopkg.in/yaml.v2", "v2.1.5", true),
            ("gopkg.in/yaml.v2", "v3.0.0", false),
            ("rsc.io/quote", "v17.0.0", false),
            ("rsc.io/quote", "v17.0.0+incompatible", true),
        ] {
            assert_eq!(
                check(path, version).is_ok(),
                ok,
                "check({path}, {version}): {:?}",
                check(path, version)
            );
        }
        let e = check_path_major("v2.0.0", "example.com/m").unwrap_err();
        assert!(matches!(e, GoError::InvalidVersion { .. }));
        assert!(e.to_string().contains("should be v0 or v1, not v2"), "{e}");
    }

    #[test]
    fn canonical_versions() {
        assert_eq!(canonical_version("v1.2").as_deref(), Some("v1.2.0"));
        assert_eq!(
            canonical_version("v2.0.0+incompatible").as_deref(),
            Some("v2.0.0+incompatible")
        );
        assert_eq!(canonical_version("v1.0.0+meta").as_deref(), Some("v1.0.0"));
        assert!(check_canonical("example.com/m", "v1.0.0").is_ok());
        assert!(check_canonical("example.com/m", "v1.0").is_err());
        assert!(check_canonical("example.com/m", "v1.0.0+meta").is_err());
        assert!(check_canonical("example.com/m", "v2.0.0+incompatible").is_ok());
        assert!(check_canonical("example.com/m/v2", "v2.0.0+incompatible").is_err());
    }

    #[test]
    fn escape_vectors() {
        for (path, esc) in [
            ("ascii.com/abcdefghijklmnopqrstuvwxyz.-/~_0123456789", None),
            (
                "github.com/GoogleCloudPlatform/omega",
                Some("github.com/!google!cloud!platform/omega"),
            ),
            ("github.com/Azure/azure-sdk", Some("github.com/!azure/azure-sdk")),
            (
                "github.com/Azure/azure-sdk-for-go",
                Some("github.com/!azure/azure-sdk-for-go"),
            ),
            ("github.com/Sirupsen/logrus", Some("github.com/!sirupsen/logrus")),
            ("github.com/BurntSushi/toml", Some("github.com/!burnt!sushi/toml")),
        ] {
            let esc = esc.unwrap_or(path);
            assert_eq!(escape_path(path).unwrap(), esc);
            assert_eq!(unescape_path(esc).unwrap(), path);
        }
        // Every path CheckPath rejects, EscapePath and UnescapePath reject too.
        for &(path, module_ok, ..) in CHECK_PATH {
            if !module_ok {
                assert!(escape_path(path).is_err(), "escape_path({path:?})");
                assert!(unescape_path(path).is_err(), "unescape_path({path:?})");
            }
        }
    }

    #[test]
    fn bad_unescapes() {
        for bad in [
            "github.com/GoogleCloudPlatform/omega",
            "github.com/!google!cloud!platform!/omega",
            "github.com/!0google!cloud!platform/omega",
            "github.com/!_google!cloud!platform/omega",
            "github.com/!!google!cloud!platform/omega",
            "github.com/google!",
            "",
        ] {
            let e = unescape_path(bad).unwrap_err();
            assert!(matches!(e, GoError::InvalidPath { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn version_escapes() {
        assert_eq!(escape_version("v1.0.0").unwrap(), "v1.0.0");
        assert_eq!(escape_version("v1.0.0-RC1").unwrap(), "v1.0.0-!r!c1");
        assert_eq!(escape_version("Master").unwrap(), "!master");
        assert_eq!(unescape_version("v1.0.0-!r!c1").unwrap(), "v1.0.0-RC1");
        assert!(escape_version("v1!").is_err());
        assert!(escape_version("v1.0.0-\u{e9}").is_err());
        assert!(escape_version("v1/2").is_err());
        assert!(escape_version("").is_err());
        assert!(escape_version("..").is_err());
        assert!(unescape_version("v1.0.0-RC1").is_err());
        assert!(unescape_version("v1.0.0-!1").is_err());
        assert!(unescape_version("v1.0.0!").is_err());
        assert!(unescape_version("a/b").is_err());
    }
}
