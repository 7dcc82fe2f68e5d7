//! zip: the central directory is the authority. Before any byte is written the archive must
//! have no duplicate names and local headers that agree with the central directory (no
//! "cloaked" members, no overlapping entries, the trick behind non-recursive zip bombs); then
//! members are extracted in directory order, stored or deflated, each read through the zip
//! crate's CRC check.

use std::io::{BufReader, Read};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::ArchiveError;
use crate::path::{self, EntryPath, LinkBase};
use crate::source::Source;
use crate::tree::{Duplicates, Tree};

/// Small on purpose: the zip crate seeks to every local header (consistency check, then each
/// member), and a seek throws the buffer away. Member data is buffered by the zip crate itself.
const READ_BUF: usize = 8 * 1024;

/// Longest symlink target read from a zip member (PATH_MAX on Linux).
const MAX_LINK_TARGET: u64 = 4096;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

fn zip_error(tree: &Tree<'_>, entry: &str, e: ZipError) -> ArchiveError {
    match e {
        ZipError::Io(e) => tree.archive_error(entry, e),
        e if entry.is_empty() => ArchiveError::Corrupt { reason: e.to_string() },
        e => ArchiveError::Corrupt {
            reason: format!("entry {entry:?}: {e}"),
        },
    }
}

pub(crate) fn extract(source: Source, tree: &mut Tree<'_>) -> Result<(), ArchiveError> {
    let mut archive =
        ZipArchive::new(BufReader::with_capacity(READ_BUF, source)).map_err(|e| zip_error(tree, "", e))?;
    let count = archive.len() as u64;
    if count > tree.limits().max_entries {
        return Err(ArchiveError::LimitExceeded {
            what: "entries",
            limit: tree.limits().max_entries,
            entry: String::new(),
        });
    }
    if archive.has_duplicate_names() {
        return Err(ArchiveError::UnsafePath {
            entry: "(zip central directory)".into(),
            reason: "the same name appears more than once".into(),
        });
    }
    archive
        .validate_header_consistency()
        .map_err(|e| zip_error(tree, "", e))?;
    tree.report_progress();
    for i in 0..archive.len() {
        extract_member(&mut archive, i, tree)?;
        tree.report_progress();
    }
    Ok(())
}

fn extract_member<R: Read + std::io::Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    tree: &mut Tree<'_>,
) -> Result<(), ArchiveError> {
    let meta = archive.by_index_data(index).map_err(|e| zip_error(tree, "", e))?;
    let raw = meta.name_raw().to_vec();
    let name = path::display(&raw);
    tree.count_entry(&name)?;
    let unsupported = |kind: &str| ArchiveError::UnsupportedEntry {
        entry: name.clone(),
        kind: kind.to_owned(),
    };
    let file_type = meta.unix_mode().map_or(0, |m| m & S_IFMT);
    match file_type {
        S_IFCHR => return Err(unsupported("character device")),
        S_IFBLK => return Err(unsupported("block device")),
        S_IFIFO => return Err(unsupported("fifo")),
        S_IFSOCK => return Err(unsupported("socket")),
        _ => {}
    }
    if meta.is_dir() || file_type == S_IFDIR {
        // Implicit, like tar directories; the name is still checked.
        return path::entry_path(&raw).map(|_| ());
    }
    if meta.encrypted() {
        return Err(unsupported("encrypted zip member"));
    }
    let method = meta.compression();
    if !matches!(method, CompressionMethod::Stored | CompressionMethod::Deflated) {
        return Err(unsupported(&format!(
            "zip compression method {method} (only stored and deflate are supported)"
        )));
    }
    let declared = meta.size();
    let p = match path::entry_path(&raw)? {
        EntryPath::Path(p) => p,
        EntryPath::Root => {
            return Err(ArchiveError::UnsafePath {
                entry: name,
                reason: "a file cannot be the archive root".into(),
            });
        }
    };
    let mut member = archive.by_index(index).map_err(|e| zip_error(tree, &name, e))?;
    if file_type == S_IFLNK {
        let mut target = Vec::new();
        (&mut member)
            .take(MAX_LINK_TARGET + 1)
            .read_to_end(&mut target)
            .map_err(|e| tree.archive_error(&name, e))?;
        if target.len() as u64 > MAX_LINK_TARGET {
            return Err(unsupported(&format!(
                "symlink with a target longer than {MAX_LINK_TARGET} bytes"
            )));
        }
        let target = path::link_target(&name, LinkBase::Symlink(&p), &target)?;
        return tree.add_symlink(&name, &p, &target);
    }
    tree.check_declared_size(&name, declared)?;
    let written = tree.add_file(&name, &p, &mut member, Duplicates::Refuse)?;
    if written != declared {
        return Err(ArchiveError::Corrupt {
            reason: format!("entry {name:?}: {written} bytes of data where the directory declares {declared}"),
        });
    }
    Ok(())
}
