//! A large local file read as a stream of chunks, each read (and, for a whole committed blob,
//! hashed) in one trip to the blocking pool, with the next chunk read while the caller sends
//! the last: the file and the hash work on one thread while the async threads write to the
//! network, and no chunk is copied again after it was read.
//!
//! A checked read holds its last chunk back until the whole file hashed to the digest it
//! should, so damage is an error before the end, never a complete wrong body (the same promise
//! as [`crate::verified::VerifyingReader`], which checks readers of any other kind).
//!
//! A checked read given a [`VerifiedFiles`] memory looks at the file first: one that hashed
//! right in full before and has not changed since is sent unhashed, and one that hashes right
//! now is remembered (see [`crate::verified_files`] for why that is sound).

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Stream;
use intact_core::{Digest, DigestHasher};
use tokio::task::JoinHandle;

use crate::verified::OnDamage;
use crate::verified_files::{FileIdentity, VerifiedFiles};

/// Bytes read in one trip to the blocking pool while few files are read at once: large
/// enough that a trip's own cost is small beside reading and hashing it.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Bytes read in one trip while many files are read at once: each read holds two chunks (the
/// one held back, the one being read) and its connection queues a few more, so memory grows
/// with the number of readers times this. Measured with a hundred readers of one file: 46 MiB
/// in all at 64 KiB, 63 MiB at 128 KiB (the target is under 64).
const CROWDED_CHUNK: usize = 64 * 1024;

/// More readers at once than this read in [`CROWDED_CHUNK`]s.
const FEW_READERS: usize = 8;

/// Files being read through [`FileChunks`] right now, in this process.
static READERS: AtomicUsize = AtomicUsize::new(0);

fn chunk_now() -> u64 {
    if READERS.load(Ordering::Relaxed) > FEW_READERS {
        CROWDED_CHUNK as u64
    } else {
        CHUNK as u64
    }
}

/// What a checked read expects of the file.
pub(crate) struct Expected {
    pub digest: Digest,
    pub size: u64,
    pub on_damage: OnDamage,
    /// Files that hashed right before and need not be hashed again while unchanged.
    pub verified_files: Option<Arc<VerifiedFiles>>,
}

/// See the module docs.
pub(crate) struct FileChunks {
    state: State,
    /// Set for a checked read: what the file must hash to, and whom to tell when it does not.
    expected: Option<(Digest, u64)>,
    on_damage: Option<OnDamage>,
    /// A checked read's last chunk, released when more bytes follow or once verified.
    held: Option<Bytes>,
}

enum State {
    /// No read in flight (only before the first poll).
    Idle(Box<Cursor>),
    Reading(JoinHandle<(Box<Cursor>, std::io::Result<Trip>)>),
    /// Everything was read (and, if checked, verified); `held` may still be sent.
    Finished,
    Failed(String),
}

/// The file and where a read of it stands; moved into each blocking trip and back.
struct Cursor {
    file: std::fs::File,
    /// Bytes still to read (a checked read asks for one more than it expects, to see the end).
    left: u64,
    hasher: Option<DigestHasher>,
    /// A checked read's memory of verified files and the digest the file must hash to: the
    /// first trip looks the file up in it, the last remembers the file once it hashed right.
    verified_files: Option<(Arc<VerifiedFiles>, Digest)>,
    /// What the file looked like before its first byte was read, when it had settled.
    identity: Option<FileIdentity>,
    looked: bool,
    /// The file hashed right before and was unchanged when this read began: it is not hashed,
    /// but looked at again after its last read, and the last chunk is held back till then.
    trusted: bool,
    /// A trusted file looked different after its last read than before its first.
    changed: bool,
}

/// One trip's result.
struct Trip {
    bytes: Bytes,
    /// The file ended (or `left` reached zero).
    end: bool,
}

impl FileChunks {
    /// `len` bytes of `file` from where it is positioned, unchecked (a byte range).
    pub(crate) fn range(file: std::fs::File, len: u64) -> Self {
        Self::new(
            Cursor {
                file,
                left: len,
                hasher: None,
                verified_files: None,
                identity: None,
                looked: true,
                trusted: false,
                changed: false,
            },
            None,
        )
    }

    /// The whole of `file`, which must be positioned at its start and hash to `expected`.
    pub(crate) fn checked(file: std::fs::File, expected: Expected) -> Self {
        let cursor = Cursor {
            file,
            left: expected.size.saturating_add(1),
            hasher: Some(DigestHasher::new()),
            looked: expected.verified_files.as_ref().is_none_or(|memory| !memory.enabled()),
            verified_files: expected.verified_files.map(|memory| (memory, expected.digest)),
            identity: None,
            trusted: false,
            changed: false,
        };
        let mut chunks = Self::new(cursor, Some((expected.digest, expected.size)));
        chunks.on_damage = Some(expected.on_damage);
        chunks
    }

    fn new(cursor: Cursor, expected: Option<(Digest, u64)>) -> Self {
        READERS.fetch_add(1, Ordering::Relaxed);
        Self {
            state: State::Idle(Box::new(cursor)),
            expected,
            on_damage: None,
            held: None,
        }
    }

    fn damaged(&mut self, why: String) -> std::io::Error {
        if let Some(report) = self.on_damage.take() {
            report(why.clone());
        }
        self.state = State::Failed(why.clone());
        std::io::Error::new(std::io::ErrorKind::InvalidData, why)
    }

    /// Whether a checked read's bytes are the blob they should be; `None` when they are (and
    /// then the file is remembered as verified, if it had settled before it was read).
    fn verdict(&self, cursor: &mut Cursor) -> Option<String> {
        let (digest, size) = self.expected?;
        if cursor.trusted {
            return cursor
                .changed
                .then(|| format!("blob {digest} changed on disk while it was read"));
        }
        let hasher = cursor.hasher.take()?;
        let read = hasher.len();
        let actual = hasher.finish();
        if read != size || actual != digest {
            return Some(format!(
                "blob {digest} is damaged: {read} bytes hashing to {actual}, expected {size} bytes"
            ));
        }
        if let (Some((memory, _)), Some(identity)) = (&cursor.verified_files, cursor.identity) {
            memory.remember(digest, identity);
        }
        None
    }
}

impl Drop for FileChunks {
    fn drop(&mut self) {
        READERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts reading the next chunk of `cursor`'s file. The buffer is allocated here, on an async
/// thread, not in the blocking pool: the chunk is freed on an async thread too (once sent),
/// and an allocator keeps memory per thread, so buffers made across a hundred pool threads
/// held a page or more on each of them.
fn read_next(cursor: Box<Cursor>) -> JoinHandle<(Box<Cursor>, std::io::Result<Trip>)> {
    let want = cursor.left.min(chunk_now());
    let buf = Vec::with_capacity(usize::try_from(want).unwrap_or(CROWDED_CHUNK));
    tokio::task::spawn_blocking(move || read_one(cursor, want, buf))
}

fn read_one(mut cursor: Box<Cursor>, want: u64, mut buf: Vec<u8>) -> (Box<Cursor>, std::io::Result<Trip>) {
    if let Err(e) = look_up(&mut cursor) {
        return (cursor, Err(e));
    }
    let got = (&mut cursor.file).take(want).read_to_end(&mut buf);
    let result = got.and_then(|n| {
        cursor.left -= n as u64;
        if let Some(hasher) = &mut cursor.hasher {
            hasher.update(&buf);
        }
        let end = (n as u64) < want || cursor.left == 0;
        if end && cursor.trusted {
            // A write during the read (which moves the change time) fails it before its last
            // chunk, as a hash would have.
            let now = FileIdentity::of(&cursor.file.metadata()?);
            cursor.changed = cursor.identity != Some(now);
        }
        Ok(Trip {
            end,
            bytes: Bytes::from(buf),
        })
    });
    (cursor, result)
}

/// On a checked read's first trip: takes the file's identity before reading a byte of it and
/// asks the memory whether the file hashed right before looking just so; if it did, drops the
/// hasher and marks the read trusted.
fn look_up(cursor: &mut Cursor) -> std::io::Result<()> {
    if std::mem::replace(&mut cursor.looked, true) {
        return Ok(());
    }
    let Some((memory, digest)) = &cursor.verified_files else {
        return Ok(());
    };
    let meta = cursor.file.metadata()?;
    cursor.identity = memory.identity(&meta);
    if let Some(identity) = &cursor.identity
        && memory.holds(digest, identity)
    {
        cursor.hasher = None;
        cursor.trusted = true;
    }
    Ok(())
}

impl Stream for FileChunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Idle(_) => {
                    let State::Idle(cursor) = std::mem::replace(&mut this.state, State::Finished) else {
                        unreachable!("matched Idle above");
                    };
                    this.state = State::Reading(read_next(cursor));
                }
                State::Reading(handle) => {
                    let (mut cursor, result) = match ready!(Pin::new(handle).poll(cx)) {
                        Ok(done) => done,
                        Err(e) => {
                            let why = format!("reading a file: {e}");
                            this.state = State::Failed(why.clone());
                            return Poll::Ready(Some(Err(std::io::Error::other(why))));
                        }
                    };
                    let read = match result {
                        Ok(read) => read,
                        Err(e) => {
                            this.state = State::Failed(e.to_string());
                            return Poll::Ready(Some(Err(e)));
                        }
                    };
                    if this.expected.is_none() {
                        this.state = if read.end {
                            State::Finished
                        } else {
                            State::Reading(read_next(cursor))
                        };
                        if read.bytes.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(read.bytes)));
                    }
                    if read.end {
                        if let Some(why) = this.verdict(&mut cursor) {
                            return Poll::Ready(Some(Err(this.damaged(why))));
                        }
                        this.state = State::Finished;
                    } else {
                        // Read the next chunk while this one's predecessor is sent.
                        this.state = State::Reading(read_next(cursor));
                    }
                    if read.bytes.is_empty() {
                        continue;
                    }
                    if let Some(previous) = this.held.replace(read.bytes) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                State::Finished => return Poll::Ready(this.held.take().map(Ok)),
                // Every later poll fails too, as a reader's later reads do: a caller that
                // went on after an error must never see a clean end instead.
                State::Failed(why) => {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        why.clone(),
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;

    use super::*;

    fn file_with(content: &[u8]) -> std::fs::File {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(content).expect("write");
        file.seek(SeekFrom::Start(0)).expect("seek");
        file
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    type Reports = Arc<Mutex<Vec<String>>>;

    fn expecting(content: &[u8], size: u64) -> (Expected, Reports) {
        let reports: Reports = Arc::default();
        let seen = reports.clone();
        let expected = Expected {
            digest: Digest::of(content),
            size,
            on_damage: Box::new(move |why| seen.lock().expect("reports").push(why)),
            verified_files: None,
        };
        (expected, reports)
    }

    /// Every chunk until the first error; whether there was one.
    async fn drain(mut chunks: FileChunks) -> (Vec<u8>, Option<std::io::Error>) {
        let mut out = Vec::new();
        while let Some(next) = chunks.next().await {
            match next {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn a_good_file_comes_out_whole_at_every_size() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let bytes = content(len);
            let (expected, reports) = expecting(&bytes, len as u64);
            let (out, err) = drain(FileChunks::checked(file_with(&bytes), expected)).await;
            assert!(err.is_none(), "{len}: {err:?}");
            assert_eq!(out, bytes, "{len}");
            assert!(reports.lock().expect("reports").is_empty());
        }
    }

    #[tokio::test]
    async fn damage_is_an_error_before_the_last_chunk_and_reported_once() {
        let good = content(3 * CHUNK + 5);
        for (what, stored) in [
            ("flipped in the last chunk", {
                let mut b = good.clone();
                b[3 * CHUNK + 1] ^= 1;
                b
            }),
            ("flipped in the first chunk", {
                let mut b = good.clone();
                b[3] ^= 1;
                b
            }),
            ("one byte short", good[..good.len() - 1].to_vec()),
            ("one byte long", [good.as_slice(), b"x"].concat()),
            ("a chunk short", good[..2 * CHUNK + 5].to_vec()),
        ] {
            let (expected, reports) = expecting(&good, good.len() as u64);
            let (out, err) = drain(FileChunks::checked(file_with(&stored), expected)).await;
            let err = err.unwrap_or_else(|| panic!("{what}: no error"));
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{what}");
            assert!(out.len() < good.len(), "{what}: {} bytes came out", out.len());
            assert!(good.starts_with(&out) || stored.starts_with(&out), "{what}");
            assert_eq!(reports.lock().expect("reports").len(), 1, "{what}");
        }
    }

    #[tokio::test]
    async fn one_byte_more_than_expected_is_damage_at_every_edge() {
        for size in [0, 1, CHUNK, 2 * CHUNK] {
            let good = content(size);
            let stored = [good.as_slice(), b"x"].concat();
            let (expected, reports) = expecting(&good, size as u64);
            let (out, err) = drain(FileChunks::checked(file_with(&stored), expected)).await;
            assert!(err.is_some(), "{size}: no error");
            assert!(out.len() < size.max(1), "{size}: {} bytes came out", out.len());
            assert_eq!(reports.lock().expect("reports").len(), 1, "{size}");
        }
    }

    #[tokio::test]
    async fn the_last_byte_of_a_whole_number_of_chunks_is_checked() {
        let good = content(2 * CHUNK);
        let mut stored = good.clone();
        stored[2 * CHUNK - 1] ^= 1;
        let (expected, _) = expecting(&good, good.len() as u64);
        let (out, err) = drain(FileChunks::checked(file_with(&stored), expected)).await;
        assert!(err.is_some());
        assert_eq!(out.len(), CHUNK, "the last chunk was held back");
    }

    /// A memory that trusts files however recently they changed (the tests sleep past the
    /// file clock's tick between a look and a write instead).
    fn memory() -> Arc<VerifiedFiles> {
        Arc::new(VerifiedFiles::settling_for(16, std::time::Duration::ZERO))
    }

    fn reopened(file: &std::fs::File) -> std::fs::File {
        let mut again = file.try_clone().expect("clone");
        again.seek(SeekFrom::Start(0)).expect("seek");
        again
    }

    #[tokio::test]
    async fn a_file_that_hashed_right_is_remembered_and_then_sent_unhashed() {
        let bytes = content(2 * CHUNK + 9);
        let file = file_with(&bytes);
        let memory = memory();
        let (mut expected, _) = expecting(&bytes, bytes.len() as u64);
        expected.verified_files = Some(memory.clone());
        let (out, err) = drain(FileChunks::checked(reopened(&file), expected)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, bytes);
        assert_eq!(memory.len(), 1, "remembered once it hashed right");

        // Proof that the second read is not hashed: the memory is told (falsely) that this
        // file holds other bytes' digest, and the read of that digest takes the file as it is.
        let other = content(2 * CHUNK + 9).iter().map(|b| b ^ 1).collect::<Vec<_>>();
        let identity = memory.identity(&file.metadata().expect("meta")).expect("settled");
        memory.remember(Digest::of(&other), identity);
        let (mut expected, reports) = expecting(&other, other.len() as u64);
        expected.verified_files = Some(memory.clone());
        let (out, err) = drain(FileChunks::checked(reopened(&file), expected)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, bytes, "trusted: sent as read");
        assert!(reports.lock().expect("reports").is_empty());
    }

    #[tokio::test]
    async fn a_file_written_to_after_it_hashed_right_is_hashed_again_and_its_damage_caught() {
        let bytes = content(2 * CHUNK + 9);
        let mut file = file_with(&bytes);
        let memory = memory();
        let (mut expected, _) = expecting(&bytes, bytes.len() as u64);
        expected.verified_files = Some(memory.clone());
        let (_, err) = drain(FileChunks::checked(reopened(&file), expected)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(memory.len(), 1);

        // Past the file clock's tick, one byte is changed in place: same size, same inode.
        std::thread::sleep(std::time::Duration::from_millis(50));
        file.seek(SeekFrom::Start(CHUNK as u64)).expect("seek");
        file.write_all(&[bytes[CHUNK] ^ 1]).expect("damage");
        let (mut expected, reports) = expecting(&bytes, bytes.len() as u64);
        expected.verified_files = Some(memory.clone());
        let (out, err) = drain(FileChunks::checked(reopened(&file), expected)).await;
        assert!(err.is_some(), "the damage was sent as good bytes");
        assert!(out.len() < bytes.len());
        assert_eq!(reports.lock().expect("reports").len(), 1);
    }

    #[tokio::test]
    async fn a_trusted_file_written_to_during_its_read_fails_before_its_last_chunk() {
        let bytes = content(4 * CHUNK + 9);
        let file = file_with(&bytes);
        let memory = memory();
        // The memory says (falsely) that this file holds other bytes' digest: a read of that
        // digest can only succeed unhashed, so its failure below is the trusted path's own.
        let other: Vec<u8> = bytes.iter().map(|b| b ^ 1).collect();
        let identity = memory.identity(&file.metadata().expect("meta")).expect("settled");
        memory.remember(Digest::of(&other), identity);
        let (mut expected, reports) = expecting(&other, other.len() as u64);
        expected.verified_files = Some(memory.clone());
        let mut chunks = FileChunks::checked(reopened(&file), expected);
        let first = chunks.next().await.expect("a chunk").expect("read");
        // Past the file clock's tick, the tail is rewritten in place (same size) mid-read.
        std::thread::sleep(std::time::Duration::from_millis(50));
        use std::os::unix::fs::FileExt;
        file.write_all_at(&[bytes[4 * CHUNK + 3] ^ 1], (4 * CHUNK + 3) as u64)
            .expect("damage");
        let (rest, err) = drain(chunks).await;
        let err = err.expect("a file changed mid-read was sent whole");
        assert!(err.to_string().contains("changed on disk while it was read"), "{err}");
        assert!(first.len() + rest.len() < bytes.len());
        assert_eq!(reports.lock().expect("reports").len(), 1);
    }

    #[tokio::test]
    async fn a_file_that_changed_a_moment_ago_is_neither_remembered_nor_trusted() {
        let bytes = content(CHUNK + 1);
        let file = file_with(&bytes);
        let memory = Arc::new(VerifiedFiles::new(16));
        let (mut expected, _) = expecting(&bytes, bytes.len() as u64);
        expected.verified_files = Some(memory.clone());
        let (out, err) = drain(FileChunks::checked(reopened(&file), expected)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, bytes);
        assert_eq!(memory.len(), 0, "its change time could still hide a write");
    }

    #[tokio::test]
    async fn many_readers_at_once_each_read_their_whole_file() {
        // Past FEW_READERS, reads go in smaller chunks; every body still comes out whole.
        let bytes = content(CHUNK + 12_345);
        let readers: Vec<_> = (0..FEW_READERS + 4)
            .map(|_| {
                let (expected, _) = expecting(&bytes, bytes.len() as u64);
                FileChunks::checked(file_with(&bytes), expected)
            })
            .collect();
        for (out, err) in futures::future::join_all(readers.into_iter().map(drain)).await {
            assert!(err.is_none(), "{err:?}");
            assert_eq!(out, bytes);
        }
    }

    #[tokio::test]
    async fn a_range_is_read_from_where_the_file_stands() {
        let bytes = content(2 * CHUNK + 9);
        let mut file = file_with(&bytes);
        file.seek(SeekFrom::Start(7)).expect("seek");
        let (out, err) = drain(FileChunks::range(file, (CHUNK + 3) as u64)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, bytes[7..7 + CHUNK + 3]);
    }

    #[tokio::test]
    async fn a_range_past_the_end_stops_at_the_end() {
        let bytes = content(100);
        let (out, err) = drain(FileChunks::range(file_with(&bytes), 1000)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, bytes);
    }
}
