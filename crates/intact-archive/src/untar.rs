//! tar, plain or compressed: one forward pass through the decoder, entries handled as they
//! stream past. The `tar` crate parses headers (ustar, GNU long names, pax); everything it
//! hands us is checked here before the tree sees it.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use tar::EntryType;

use crate::path::{self, EntryPath, LinkBase};
use crate::source::Source;
use crate::tree::{Duplicates, Tree};
use crate::zstd::ZstdReader;
use crate::{ArchiveError, ArchiveKind};

/// The `tar` crate reads GNU long names and pax headers whole into memory. Bounding the bytes
/// it may consume while looking for the next entry keeps that memory flat.
pub(crate) const METADATA_BUDGET: u64 = 1024 * 1024;

/// Decompressed bytes tolerated after the end-of-archive marker (record padding); read so the
/// compressed stream's own integrity check (gzip CRC, xz index, zstd checksum) is verified.
const TRAILER_BUDGET: u64 = 1024 * 1024;

const READ_BUF: usize = 64 * 1024;

#[derive(Default)]
struct StreamState {
    /// `Some(n)`: at most `n` more bytes may be read (the tar crate is parsing headers).
    budget: Cell<Option<u64>>,
    over_budget: Cell<bool>,
    /// A read returned end-of-input.
    eof: Cell<bool>,
}

/// The decompressed tar stream, watched: header-parsing budget and end-of-input.
struct Stream {
    inner: Box<dyn Read>,
    state: Rc<StreamState>,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut len = buf.len();
        if let Some(left) = self.state.budget.get() {
            if left == 0 {
                self.state.over_budget.set(true);
                return Err(io::Error::new(io::ErrorKind::InvalidData, "tar metadata too large"));
            }
            len = len.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let n = self.inner.read(&mut buf[..len])?;
        if n == 0 {
            self.state.eof.set(true);
        }
        if let Some(left) = self.state.budget.get() {
            self.state.budget.set(Some(left - n as u64));
        }
        Ok(n)
    }
}

fn decoder(kind: ArchiveKind, source: Source, max_decoder_memory: u64) -> Box<dyn Read> {
    let input = BufReader::with_capacity(READ_BUF, source);
    match kind {
        ArchiveKind::Tar | ArchiveKind::Zip => Box::new(input),
        ArchiveKind::TarGz => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        ArchiveKind::TarBz2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        ArchiveKind::TarXz => {
            let kib = u32::try_from(max_decoder_memory / 1024).unwrap_or(u32::MAX);
            Box::new(lzma_rust2::XzReader::new_mem_limit(input, true, kib))
        }
        ArchiveKind::TarZst => Box::new(ZstdReader::new(input, max_decoder_memory)),
    }
}

pub(crate) fn extract(kind: ArchiveKind, source: Source, tree: &mut Tree<'_>) -> Result<(), ArchiveError> {
    let state = Rc::new(StreamState::default());
    let stream = Stream {
        inner: decoder(kind, source, tree.limits().max_decoder_memory),
        state: state.clone(),
    };
    let mut archive = tar::Archive::new(stream);
    let header_error = |tree: &Tree<'_>, e: io::Error| {
        if state.over_budget.get() {
            ArchiveError::LimitExceeded {
                what: "tar metadata bytes",
                limit: METADATA_BUDGET,
                entry: String::new(),
            }
        } else {
            tree.archive_error("", e)
        }
    };
    {
        let mut entries = archive.entries().map_err(|e| header_error(tree, e))?;
        loop {
            state.budget.set(Some(METADATA_BUDGET));
            let next = entries.next();
            state.budget.set(None);
            let mut entry = match next {
                None => break,
                Some(Ok(entry)) => entry,
                Some(Err(e)) => return Err(header_error(tree, e)),
            };
            let name = path::display(&entry.path_bytes());
            tree.count_entry(&name)?;
            extract_entry(&name, &mut entry, tree)?;
            // Whatever of the entry's data is unread (directories, global headers) is read
            // here, counted, rather than skipped by the tar crate inside the budgeted call.
            tree.skip(&name, &mut entry)?;
            tree.report_progress();
        }
    }
    if state.eof.get() {
        return Err(ArchiveError::Corrupt {
            reason: "the archive ends without an end-of-archive marker: it is probably truncated".into(),
        });
    }
    let mut rest = archive.into_inner();
    let trailing =
        io::copy(&mut (&mut rest).take(TRAILER_BUDGET + 1), &mut io::sink()).map_err(|e| tree.archive_error("", e))?;
    if trailing > TRAILER_BUDGET {
        return Err(ArchiveError::Corrupt {
            reason: format!("more than {TRAILER_BUDGET} bytes follow the end-of-archive marker"),
        });
    }
    Ok(())
}

fn extract_entry(name: &str, entry: &mut tar::Entry<'_, Stream>, tree: &mut Tree<'_>) -> Result<(), ArchiveError> {
    let raw = entry.path_bytes().into_owned();
    let entry_type = entry.header().entry_type();
    let unsupported = |kind: &str| ArchiveError::UnsupportedEntry {
        entry: name.to_owned(),
        kind: kind.to_owned(),
    };
    let file_path = |what: &str| match path::entry_path(&raw)? {
        EntryPath::Path(p) => Ok(p),
        EntryPath::Root => Err(ArchiveError::UnsafePath {
            entry: name.to_owned(),
            reason: format!("a {what} cannot be the archive root"),
        }),
    };
    match entry_type {
        // Old tars mark directories only by a trailing slash on a regular entry.
        EntryType::Regular | EntryType::Continuous if !raw.ends_with(b"/") => {
            let p = file_path("file")?;
            let declared = entry.size();
            tree.check_declared_size(name, declared)?;
            let written = tree.add_file(name, &p, entry, Duplicates::Replace)?;
            if written != declared {
                return Err(ArchiveError::Corrupt {
                    reason: format!("entry {name:?}: the archive ends inside its data ({written} of {declared} bytes)"),
                });
            }
            Ok(())
        }
        EntryType::Regular | EntryType::Continuous | EntryType::Directory => {
            // Implicit: parents are created for the files inside. The name is still checked.
            path::entry_path(&raw).map(|_| ())
        }
        EntryType::Symlink | EntryType::Link => {
            let p = file_path("link")?;
            let Some(target) = entry.link_name_bytes() else {
                return Err(ArchiveError::Corrupt {
                    reason: format!("entry {name:?}: link without a target"),
                });
            };
            if entry_type == EntryType::Symlink {
                let target = path::link_target(name, LinkBase::Symlink(&p), &target)?;
                tree.add_symlink(name, &p, &target)
            } else {
                let target = path::link_target(name, LinkBase::Root, &target)?;
                tree.add_hardlink(name, &p, &target, Duplicates::Replace)
            }
        }
        // pax global headers carry defaults (mtime, charset...) for the entries that follow,
        // none of which intact uses.
        EntryType::XGlobalHeader => Ok(()),
        EntryType::Char => Err(unsupported("character device")),
        EntryType::Block => Err(unsupported("block device")),
        EntryType::Fifo => Err(unsupported("fifo")),
        EntryType::GNUSparse => Err(unsupported("gnu sparse file")),
        other => Err(unsupported(&format!(
            "tar entry type {:?}",
            char::from(other.as_byte())
        ))),
    }
}
