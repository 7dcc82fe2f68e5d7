//! Turning an upstream directory into file names: the `<a href>` links of an HTTP autoindex
//! page (nginx `autoindex`, Apache `mod_autoindex`, Python's `http.server`), and the `*`/`?`
//! globs of an artifact's `files`.
//!
//! An index page is outside input. Only relative links naming a direct child count: no scheme,
//! no leading `/`, no query or fragment, no `..`; directories (a trailing `/`) are skipped;
//! names are percent-decoded and HTML-entity-decoded before any check. Whatever survives
//! still has to pass the `FilePath` grammar before it names a file of a version.

use std::collections::BTreeSet;

/// Names of the files a directory index page links to, sorted and unique.
pub fn parse_index(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = BTreeSet::new();
    let mut pos = 0;
    while let Some(i) = lower[pos..].find("<a") {
        let start = pos + i + 2;
        pos = start;
        // `<a` must be the whole tag name (`<abbr>` and `<area>` are not links).
        if !lower[start..].starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let end = lower[start..].find('>').map_or(lower.len(), |e| start + e);
        if let Some(href) = attribute(&html[start..end], &lower[start..end], "href")
            && let Some(name) = child_name(&href)
        {
            out.insert(name);
        }
        pos = end;
    }
    out.into_iter().collect()
}

/// The value of attribute `name` in a tag's attribute text (`tag_lower` is its lower-cased copy).
fn attribute(tag: &str, tag_lower: &str, name: &str) -> Option<String> {
    let bytes = tag_lower.as_bytes();
    let mut from = 0;
    while let Some(i) = tag_lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let preceded_ok = at == 0 || bytes[at - 1].is_ascii_whitespace();
        let rest = tag[from..].trim_start();
        if !preceded_ok || !rest.starts_with('=') {
            continue;
        }
        let value = rest[1..].trim_start();
        let raw = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            Some(_) => value.split(|c: char| c.is_ascii_whitespace()).next().unwrap_or(""),
            None => "",
        };
        return Some(decode_entities(raw));
    }
    None
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// The file name a link names, if it is a relative link to a direct child file.
fn child_name(href: &str) -> Option<String> {
    let href = href.trim();
    let href = href.strip_prefix("./").unwrap_or(href);
    if href.is_empty() || href.starts_with('/') || href.contains(['?', '#']) || href.ends_with('/') {
        return None;
    }
    // A scheme (`http:`, `mailto:`...) makes it absolute; a plain name has no ':' before any '/'.
    if href.split('/').next().is_some_and(|first| first.contains(':')) {
        return None;
    }
    let name = percent_decode(href)?;
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control)
    {
        return None;
    }
    Some(name)
}

/// Strict percent-decoding: a malformed escape or invalid UTF-8 refuses the whole name.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            // `from_str_radix` alone would also take a sign (`%+D`).
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a URL path segment keeps as it is: RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment for a URL (unreserved characters stay as they are).
pub fn percent_encode(seg: &str) -> String {
    percent_encoding::utf8_percent_encode(seg, UNRESERVED).to_string()
}

/// Percent-encodes a `/`-separated path segment by segment (the slashes stay).
pub fn percent_encode_path(path: &str) -> String {
    path.split('/').map(percent_encode).collect::<Vec<_>>().join("/")
}

/// Whether a pattern uses glob characters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether a file name matches a pattern, with the one glob matcher intact has (Go's
/// `path.Match`, also used by the Go proxy's `exclude` lists): `*` is any run of characters,
/// `?` exactly one, `[a-z]` a class, `\` escapes. A malformed pattern matches nothing (and
/// is refused when the configuration is loaded).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    intact_go::pattern::path_match_checked(pattern, name).unwrap_or(false)
}

/// Splits `dir/sub/pattern` into its directory part (`dir/sub`, possibly empty) and last
/// segment. Globs may only appear in the last segment (checked when the config is loaded).
pub fn split_pattern(pattern: &str) -> (&str, &str) {
    match pattern.rsplit_once('/') {
        Some((dir, last)) => (dir, last),
        None => ("", pattern),
    }
}

/// Checks an artifact's file pattern at start-up: a valid relative path once glob characters
/// are set aside, with globs only in its last segment.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let (dir, last) = split_pattern(pattern);
    if is_glob(dir) {
        return Err(format!(
            "pattern {pattern:?}: '*', '?' and '[' may only appear in the last path segment"
        ));
    }
    // Go reports a malformed pattern only once matching reaches it: matching the pattern
    // against itself reaches every part.
    if intact_go::pattern::path_match_checked(last, last).is_none() {
        return Err(format!(
            "pattern {pattern:?}: malformed (an unclosed '[' or a trailing '\\')"
        ));
    }
    let probe = pattern.replace(['*', '?'], "x");
    intact_core::FilePath::parse(&probe).map_err(|e| format!("pattern {pattern:?}: {}", e.rule))?;
    if last.is_empty() {
        return Err(format!("pattern {pattern:?} names no file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_apache_and_python_indexes() {
        let nginx = r#"<html><head><title>Index of /b/R19/</title></head><body>
<h1>Index of /b/R19/</h1><hr><pre><a href="../">../</a>
<a href="sub/">sub/</a>                                               23-Nov-2026 10:00       -
<a href="a_full_dev.bin">a_full_dev.bin</a>                                     23-Nov-2026 10:00   1048576
<a href="a_full_dev.bin.json">a_full_dev.bin.json</a>
<a href="test%20suites.tar.bz2">test suites.tar.bz2</a>
</pre><hr></body></html>"#;
        assert_eq!(
            parse_index(nginx),
            ["a_full_dev.bin", "a_full_dev.bin.json", "test suites.tar.bz2"]
        );
        let apache = r#"<table><tr><th><a href="?C=N;O=D">Name</a></th></tr>
<tr><td><a href="/b/">Parent Directory</a></td></tr>
<tr><td><A HREF='autotest_packages.tar'>autotest_packages.tar</A></td></tr>
<tr><td><a class="x" href=plain.txt>plain.txt</a></td></tr></table>"#;
        assert_eq!(parse_index(apache), ["autotest_packages.tar", "plain.txt"]);
        let python = r#"<ul>
<li><a href="x%2Ey.bin">x.y.bin</a></li>
<li><a href="a&amp;b.txt">a&amp;b.txt</a></li>
<li><a href="./dot.txt">dot.txt</a></li>
</ul>"#;
        assert_eq!(parse_index(python), ["a&b.txt", "dot.txt", "x.y.bin"]);
    }

    #[test]
    fn hostile_links_are_ignored() {
        let html = r#"
<a href="http://evil.example/x.bin">abs</a>
<a href="//evil.example/x.bin">proto-relative</a>
<a href="/etc/passwd">root</a>
<a href="..">up</a>
<a href="%2e%2e">encoded up</a>
<a href="..%2fsecret">encoded traversal</a>
<a href="a/b.bin">nested</a>
<a href="bad%zz">bad escape</a>
<a href="nul%00x">nul</a>
<a href="javascript:alert(1)">js</a>
<a href="x.bin#frag">frag</a>
<abbr href="abbr.bin">not a link</abbr>
<a href="ok.bin">ok</a>"#;
        assert_eq!(parse_index(html), ["ok.bin"]);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*_full_dev.bin", "R19-2003.0.0_full_dev.bin"));
        assert!(!glob_match("*_full_dev.bin", "R19_full_dev.bin.json"));
        assert!(glob_match("*_full_dev.bin.json", "R19_full_dev.bin.json"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(!glob_match("a*b*c", "a-b-b-d"));
        assert!(glob_match("exact.tar", "exact.tar"));
        assert!(!glob_match("exact.tar", "exact.tar.gz"));
        // Pathological patterns stay fast.
        let long = "a".repeat(5000);
        assert!(!glob_match("*a*a*a*a*a*a*b", &long));
    }

    /// Found by the `staging_listing` fuzz target: a `*` in the pattern facing a literal `*`
    /// in the name was taken as that character, so the wildcard was lost.
    #[test]
    fn a_star_in_the_name_does_not_eat_the_wildcard() {
        assert!(glob_match("a*b", "a*xb"));
        assert!(glob_match("*^n*", "d.bin*^n*\nd.bin"));
        assert!(glob_match("*", "*"));
        assert!(glob_match("a*", "a*"));
        assert!(!glob_match("a*c", "a*b"));
    }

    #[test]
    fn classes_and_escapes_are_those_of_the_go_proxy_matcher() {
        assert!(glob_match("build-[0-9].tar", "build-7.tar"));
        assert!(!glob_match("build-[0-9].tar", "build-x.tar"));
        assert!(glob_match(r"literal\*.bin", "literal*.bin"));
        assert!(!glob_match(r"literal\*.bin", "literally.bin"));
        assert!(!glob_match("broken[", "broken["), "a malformed pattern matches nothing");
        assert!(check_pattern("broken[.tar").is_err());
        assert!(check_pattern("dir[0-9]/x.tar").is_err());
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("*_full_dev.bin").is_ok());
        assert!(check_pattern("debug/*.tar").is_ok());
        assert!(check_pattern("*/x.tar").is_err());
        assert!(check_pattern("../x").is_err());
        assert!(check_pattern("/abs").is_err());
        assert!(check_pattern("a/").is_err());
    }

    #[test]
    fn percent_coding_round_trips() {
        assert_eq!(percent_encode("a b+c.tar"), "a%20b%2Bc.tar");
        assert_eq!(percent_decode("a%20b%2Bc.tar").as_deref(), Some("a b+c.tar"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    /// Found by the `staging_listing` fuzz target: `u8::from_str_radix` takes a sign, so
    /// `%+D` decoded to a carriage return instead of refusing the malformed escape.
    #[test]
    fn escapes_are_two_hex_digits() {
        assert_eq!(percent_decode("uu.%+D/D"), None);
        assert_eq!(percent_decode("a%+1b"), None);
        assert_eq!(percent_decode("a%-1b"), None);
        assert_eq!(percent_decode("a% 1b"), None);
        assert_eq!(percent_decode("%2e%2E").as_deref(), Some(".."));
    }
}
