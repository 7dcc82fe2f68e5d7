//! Reading a blob that is a plain local file (the file store's blobs, the S3 cache's entries)
//! in one trip to the blocking pool.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;

use super::BlobBody;

/// Reads up to this size are done in one blocking call and served from memory.
pub(crate) const SMALL_READ: u64 = 256 * 1024;

/// What `open` found: the file's whole size and a body for the asked range.
pub(crate) type Opened = (u64, BlobBody);

/// Opens `path`, stats it, positions it at `range`'s start and, for reads up to
/// [`SMALL_READ`] (the common case on an artifact store's hot path), reads the bytes too: one
/// trip to tokio's blocking pool instead of one per step, which is most of a small read's
/// cost. Larger reads hand out the opened file, read in chunks as the body is consumed.
pub(crate) async fn open(path: PathBuf, range: Option<Range<u64>>) -> std::io::Result<Opened> {
    enum Body {
        Bytes(Vec<u8>),
        File(std::fs::File, u64),
    }
    let (size, body) = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, Body)> {
        let mut file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        let (start, len) = match &range {
            None => (0, size),
            Some(r) => (r.start, r.end.saturating_sub(r.start)),
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start))?;
        }
        if len <= SMALL_READ {
            let mut buf = Vec::with_capacity(len as usize);
            file.take(len).read_to_end(&mut buf)?;
            return Ok((size, Body::Bytes(buf)));
        }
        Ok((size, Body::File(file, len)))
    })
    .await
    .map_err(std::io::Error::other)??;
    let body = match body {
        Body::Bytes(buf) => BlobBody::reader(std::io::Cursor::new(buf)),
        Body::File(file, len) => BlobBody::file(file, len),
    };
    Ok((size, body))
}
