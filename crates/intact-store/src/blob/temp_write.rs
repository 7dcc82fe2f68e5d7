//! Writing an upload into its temp file, hashed on the way, with the hashing and the writing
//! of one chunk done on the blocking pool while the next chunk arrives.
//!
//! Before, each chunk was hashed on the async thread that received it and then copied once
//! more into `tokio::fs::File`'s own buffer for its write: the receiving thread did both the
//! hashing and an extra copy, and the pool thread only wrote. Now the chunk's buffer itself
//! goes to the pool (and comes back to be filled again), where it is hashed and written in
//! one trip: receiving and hashing overlap, and no byte is copied between the two.
//!
//! One chunk is in flight at a time, so the file receives its chunks in order, and memory
//! stays at two chunk buffers per upload.

use std::fs::File;
use std::io::Write;

use intact_core::DigestHasher;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// What the pool hands back after a chunk: the file and hasher to go on with, and the
/// buffer to fill next.
struct Written {
    file: File,
    hasher: DigestHasher,
    buf: Vec<u8>,
}

enum State {
    /// No chunk in flight: the file and hasher are here.
    Idle(File, DigestHasher),
    /// A chunk is being hashed and written on the pool; the file and hasher come back with it.
    Busy(JoinHandle<std::io::Result<Written>>),
    /// A chunk's write failed or its task was lost: nothing more can be written.
    Failed,
}

pub(crate) struct TempWrite {
    state: State,
    /// The other buffer: filled by the caller while the pool works on this one's twin.
    spare: Option<Vec<u8>>,
    /// Bytes whose write has returned (the file holds them, in the page cache at least).
    written: u64,
    /// Bytes handed over so far, written or in flight.
    handed: u64,
}

impl TempWrite {
    pub(crate) fn new(file: File) -> Self {
        Self {
            state: State::Idle(file, DigestHasher::new()),
            spare: None,
            written: 0,
            handed: 0,
        }
    }

    /// Bytes the file holds: every chunk handed over except the one in flight.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Hands over the first `len` bytes of `chunk` to be hashed and written after the chunks
    /// before it; returns a buffer of the same size to fill next (the previous chunk's, once
    /// its write is done: a failed write is this call's error).
    pub(crate) async fn write(&mut self, chunk: Vec<u8>, len: usize) -> Result<Vec<u8>> {
        let (mut file, mut hasher) = self.settle().await?;
        let size = chunk.len();
        let next = self.spare.take().unwrap_or_else(|| vec![0u8; size]);
        self.handed += len as u64;
        self.state = State::Busy(tokio::task::spawn_blocking(move || {
            hasher.update(&chunk[..len]);
            file.write_all(&chunk[..len])?;
            Ok(Written {
                file,
                hasher,
                buf: chunk,
            })
        }));
        Ok(next)
    }

    /// Waits for the last chunk: the file with every byte handed over, and their hash.
    pub(crate) async fn finish(mut self) -> Result<(File, DigestHasher)> {
        self.settle().await
    }

    /// Waits for the chunk in flight, if any; the file and hasher are then free.
    async fn settle(&mut self) -> Result<(File, DigestHasher)> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Idle(file, hasher) => Ok((file, hasher)),
            State::Busy(task) => {
                let done = task
                    .await
                    .map_err(|e| Error::io("writing temp blob", std::io::Error::other(e)))?
                    .map_err(|e| Error::io("writing temp blob", e))?;
                self.written = self.handed;
                self.spare = Some(done.buf);
                Ok((done.file, done.hasher))
            }
            State::Failed => Err(Error::io(
                "writing temp blob",
                std::io::Error::other("an earlier write to this temp blob failed"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_land_in_order_and_hash_as_one_stream() {
        let file = tempfile::tempfile().expect("temp file");
        let mut reader = file.try_clone().expect("clone");
        let mut write = TempWrite::new(file);
        let mut expected = Vec::new();
        let mut buf = vec![0u8; 4096];
        // Chunks of uneven lengths, each a different byte, so an order or length slip shows.
        for i in 0..50u8 {
            let len = 1 + usize::from(i) * 80;
            buf[..len].fill(i);
            expected.extend(std::iter::repeat_n(i, len));
            buf = write.write(buf, len).await.expect("write");
            assert_eq!(buf.len(), 4096, "the buffer handed back keeps its size");
            assert!(write.written() <= expected.len() as u64);
        }
        let (_, hasher) = write.finish().await.expect("finish");
        assert_eq!(hasher.len(), expected.len() as u64);
        let mut whole = DigestHasher::new();
        whole.update(&expected);
        assert_eq!(hasher.finish(), whole.finish());
        reader.rewind().expect("rewind");
        let mut back = Vec::new();
        reader.read_to_end(&mut back).expect("read");
        assert_eq!(back, expected);
    }

    #[tokio::test]
    async fn a_failed_write_is_an_error_and_nothing_more_is_written() {
        // A file opened read-only: its first write fails.
        let path = tempfile::NamedTempFile::new().expect("temp file").into_temp_path();
        let file = File::open(&path).expect("open read-only");
        let mut write = TempWrite::new(file);
        let buf = write.write(vec![1u8; 16], 16).await.expect("handed over");
        let err = write.write(buf, 16).await.expect_err("the first write failed");
        assert!(err.to_string().contains("writing temp blob"), "{err}");
        let again = write.write(vec![1u8; 16], 16).await.expect_err("still failed");
        assert!(again.to_string().contains("earlier write"), "{again}");
    }
}
