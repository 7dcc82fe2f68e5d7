//! What can go wrong while extracting, as outcomes a caller branches on: the archive is hostile
//! or malformed (refuse it, it is not going to get better), a limit was crossed, or the local
//! disk failed (retrying may help).

use std::io;

/// Why an extraction stopped. Entry names are the archive's own (lossy UTF-8, bounded length),
/// echoed so that an operator can find the offending member.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An entry's name (or a link's target) breaks the path rules: absolute, `..`, backslash,
    /// NUL, drive letter, outside the `FilePath` grammar, or colliding with another entry.
    #[error("unsafe path in entry {entry:?}: {reason}")]
    UnsafePath { entry: String, reason: String },
    /// A symlink or hardlink whose target leaves the extracted tree.
    #[error("link {entry:?} points outside the archive: {target:?}")]
    LinkEscape { entry: String, target: String },
    /// An entry of a kind intact does not extract (devices, fifos, sparse files, links to
    /// something that is not a file extracted earlier, encrypted or unsupported zip members).
    #[error("unsupported entry {entry:?}: {kind}")]
    UnsupportedEntry { entry: String, kind: String },
    /// A size, count or expansion limit was crossed; nothing beyond the limit was written.
    /// `entry` is the entry being extracted when it happened (empty when none was).
    #[error("archive exceeds the limit on {what} ({limit}) at entry {entry:?}")]
    LimitExceeded {
        what: &'static str,
        limit: u64,
        entry: String,
    },
    /// The archive is truncated or malformed (bad header, checksum, compressed stream...).
    #[error("corrupt archive: {reason}")]
    Corrupt { reason: String },
    /// Reading the archive file or writing the destination failed.
    #[error("i/o error during extraction: {0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lower_case_and_name_the_entry() {
        let cases = [
            (
                ArchiveError::UnsafePath {
                    entry: "../x".into(),
                    reason: "absolute path".into(),
                },
                r#"unsafe path in entry "../x": absolute path"#,
            ),
            (
                ArchiveError::LinkEscape {
                    entry: "l".into(),
                    target: "/etc/passwd".into(),
                },
                r#"link "l" points outside the archive: "/etc/passwd""#,
            ),
            (
                ArchiveError::UnsupportedEntry {
                    entry: "dev/null".into(),
                    kind: "fifo".into(),
                },
                r#"unsupported entry "dev/null": fifo"#,
            ),
            (
                ArchiveError::LimitExceeded {
                    what: "file bytes",
                    limit: 10,
                    entry: "big".into(),
                },
                r#"archive exceeds the limit on file bytes (10) at entry "big""#,
            ),
            (ArchiveError::Corrupt { reason: "bad".into() }, "corrupt archive: bad"),
        ];
        for (err, msg) in cases {
            assert_eq!(err.to_string(), msg);
        }
    }
}
