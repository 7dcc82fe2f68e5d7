//! Entry names and link targets from the archive, checked against intact's `FilePath` grammar
//! before anything touches the filesystem. Link targets are resolved lexically: we never create
//! symlinks, so there is nothing on disk a `..` could traverse.

use intact_core::FilePath;

use crate::ArchiveError;

/// How many characters of a hostile name we echo in errors.
const MAX_ECHO_CHARS: usize = 256;

/// A name from the archive, made printable and bounded for error messages.
pub(crate) fn display(raw: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(raw);
    let mut out: String = lossy.chars().take(MAX_ECHO_CHARS).collect();
    if lossy.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

/// What an entry name denotes once checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryPath {
    /// `.` or `./`: the archive root (only meaningful for a directory entry).
    Root,
    Path(FilePath),
}

fn unsafe_path(entry: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::UnsafePath {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

fn has_drive_letter(s: &[u8]) -> bool {
    s.len() >= 2 && s[0].is_ascii_alphabetic() && s[1] == b':'
}

/// Checks an entry name: strips one leading `./` (and a trailing `/`, which marks directories),
/// refuses absolute paths, drive letters, backslashes, NUL and `..`, then requires the
/// `FilePath` grammar. The error names the rule broken.
pub(crate) fn entry_path(raw: &[u8]) -> Result<EntryPath, ArchiveError> {
    let entry = display(raw);
    if raw.contains(&0) {
        return Err(unsafe_path(&entry, "name contains a nul byte"));
    }
    let Ok(name) = std::str::from_utf8(raw) else {
        return Err(unsafe_path(&entry, "name is not valid utf-8"));
    };
    if name.contains('\\') {
        return Err(unsafe_path(&entry, "name contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(unsafe_path(&entry, "absolute path"));
    }
    if has_drive_letter(raw) {
        return Err(unsafe_path(&entry, "name starts with a drive letter"));
    }
    let name = name.strip_prefix("./").unwrap_or(name);
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.is_empty() || name == "." {
        return Ok(EntryPath::Root);
    }
    if name.split('/').any(|seg| seg == "..") {
        return Err(unsafe_path(&entry, "name contains a '..' component"));
    }
    FilePath::parse(name)
        .map(EntryPath::Path)
        .map_err(|e| unsafe_path(&entry, e.rule))
}

/// Where a link's target is resolved from.
#[derive(Clone, Copy)]
pub(crate) enum LinkBase<'a> {
    /// A symlink: relative to the directory holding the link.
    Symlink(&'a FilePath),
    /// A tar hardlink: relative to the archive root.
    Root,
}

/// Resolves a link target lexically to a path inside the tree. Absolute targets and `..`
/// climbing above the root are `LinkEscape`; other malformed targets are `UnsafePath`. The
/// result is only a name: the caller still checks that it is a file extracted earlier.
pub(crate) fn link_target(entry: &str, base: LinkBase<'_>, raw: &[u8]) -> Result<FilePath, ArchiveError> {
    let target = display(raw);
    let escape = || ArchiveError::LinkEscape {
        entry: entry.to_owned(),
        target: target.clone(),
    };
    if raw.is_empty() {
        return Err(unsafe_path(entry, "link target is empty"));
    }
    if raw.contains(&0) {
        return Err(unsafe_path(entry, "link target contains a nul byte"));
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err(unsafe_path(entry, "link target is not valid utf-8"));
    };
    if text.starts_with('/') || has_drive_letter(raw) {
        return Err(escape());
    }
    if text.contains('\\') {
        return Err(unsafe_path(
            entry,
            format!("link target {target:?} contains a backslash"),
        ));
    }
    let mut stack: Vec<&str> = match base {
        LinkBase::Symlink(link) => {
            let s = link.as_str();
            match s.rfind('/') {
                Some(i) => s[..i].split('/').collect(),
                None => Vec::new(),
            }
        }
        LinkBase::Root => Vec::new(),
    };
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(escape());
                }
            }
            seg => stack.push(seg),
        }
    }
    if stack.is_empty() {
        return Err(ArchiveError::UnsupportedEntry {
            entry: entry.to_owned(),
            kind: format!("link to {target:?}, the archive root, which is not a file"),
        });
    }
    let joined = stack.join("/");
    FilePath::parse(&joined).map_err(|e| {
        unsafe_path(
            entry,
            format!("link target {target:?} resolves to {joined:?}: {}", e.rule),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match entry_path(raw.as_bytes()) {
            Ok(EntryPath::Path(p)) => p.into_string(),
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn reason(raw: &[u8]) -> String {
        match entry_path(raw) {
            Err(ArchiveError::UnsafePath { reason, .. }) => reason,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn accepts_and_normalizes() {
        assert_eq!(ok("a/b.txt"), "a/b.txt");
        assert_eq!(ok("./a/b.txt"), "a/b.txt");
        assert_eq!(ok("dir/"), "dir");
        assert_eq!(ok("./dir/"), "dir");
        assert_eq!(entry_path(b"./").ok(), Some(EntryPath::Root));
        assert_eq!(entry_path(b".").ok(), Some(EntryPath::Root));
    }

    #[test]
    fn refuses_with_the_rule_named() {
        assert_eq!(reason(b"/etc/passwd"), "absolute path");
        assert_eq!(reason(b"../../evil"), "name contains a '..' component");
        assert_eq!(reason(b"a/../../evil"), "name contains a '..' component");
        assert_eq!(reason(b"a\\..\\evil"), "name contains a backslash");
        assert_eq!(reason(b"C:/x"), "name starts with a drive letter");
        assert_eq!(reason(b"a\0b"), "name contains a nul byte");
        assert_eq!(reason(b"a\xffb"), "name is not valid utf-8");
        assert!(reason(b"a b").contains("not allowed"));
        assert!(reason(b"a//b").contains("empty segment"));
        assert!(reason(b"././a").contains("not allowed"));
        assert!(reason(b"@x/y").contains("'@'"));
    }

    fn resolve(link: &str, target: &str) -> Result<String, ArchiveError> {
        let link = FilePath::parse(link).expect("test link path");
        link_target(link.as_str(), LinkBase::Symlink(&link), target.as_bytes()).map(FilePath::into_string)
    }

    #[test]
    fn symlink_targets_resolve_from_the_link_directory() {
        assert_eq!(resolve("a/b/l", "f").ok(), Some("a/b/f".into()));
        assert_eq!(resolve("a/b/l", "../c/./f").ok(), Some("a/c/f".into()));
        assert_eq!(resolve("l", "x/../y").ok(), Some("y".into()));
        assert!(matches!(
            resolve("a/l", "../../x"),
            Err(ArchiveError::LinkEscape { .. })
        ));
        assert!(matches!(
            resolve("a/l", "/etc/passwd"),
            Err(ArchiveError::LinkEscape { .. })
        ));
        assert!(matches!(resolve("l", ".."), Err(ArchiveError::LinkEscape { .. })));
        assert!(matches!(
            resolve("a/l", ".."),
            Err(ArchiveError::UnsupportedEntry { .. })
        ));
        assert!(matches!(resolve("a/l", ""), Err(ArchiveError::UnsafePath { .. })));
        assert!(matches!(resolve("a/l", "..\\x"), Err(ArchiveError::UnsafePath { .. })));
    }

    #[test]
    fn hardlink_targets_resolve_from_the_root() {
        let r = link_target("h", LinkBase::Root, b"./a/f").map(FilePath::into_string);
        assert_eq!(r.ok(), Some("a/f".into()));
        assert!(matches!(
            link_target("h", LinkBase::Root, b"../f"),
            Err(ArchiveError::LinkEscape { .. })
        ));
    }

    #[test]
    fn echoes_are_bounded() {
        let long = vec![b'a'; 10_000];
        assert_eq!(display(&long).len(), MAX_ECHO_CHARS + 3);
    }
}
