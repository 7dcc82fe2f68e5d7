//! Writing a large upload's bytes to the disk while the rest of it still arrives.
//!
//! A blob is durable only once its temp file is fsynced, and the fsync at the end of an
//! upload waits for every byte the upload left in the page cache: for a large file, most of
//! the upload's time was that one wait, after the last byte had arrived. Here, every
//! [`STEP`] bytes, a `fdatasync` of the temp file runs on a thread of its own (one at a time)
//! while the upload goes on, so the disk writes as the network delivers and the final fsync
//! finds little left to do.
//!
//! A failed background sync fails the upload. On Linux a writeback error is reported to one
//! `fsync` only; had it been dropped here, the final fsync could succeed over lost bytes.

use std::fs::File;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{Error, Result};

/// Bytes between two background syncs. Small uploads never start one: their final fsync is
/// short anyway, and a sync costs a thread hop.
const STEP: u64 = 16 << 20;

/// The background syncs of one temp file.
pub(crate) struct Writeback {
    file: Arc<File>,
    /// Bytes written when the last sync started.
    synced_from: u64,
    in_flight: Option<JoinHandle<std::io::Result<()>>>,
}

impl Writeback {
    /// For the temp file `file` (a second handle on it is kept for the syncs).
    pub(crate) fn new(file: &File) -> Result<Self> {
        let file = file
            .try_clone()
            .map_err(|e| Error::io("opening temp blob for writeback", e))?;
        Ok(Self {
            file: Arc::new(file),
            synced_from: 0,
            in_flight: None,
        })
    }

    /// Called after bytes were handed to the temp file, `written` in all: starts a sync when
    /// [`STEP`] more were written since the last one started and none is running; reports a
    /// finished sync's failure.
    pub(crate) async fn written(&mut self, written: u64) -> Result<()> {
        if self.in_flight.as_ref().is_some_and(JoinHandle::is_finished) {
            self.settle().await?;
        }
        if self.in_flight.is_none() && written.saturating_sub(self.synced_from) >= STEP {
            self.synced_from = written;
            let file = self.file.clone();
            self.in_flight = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        }
        Ok(())
    }

    /// Waits for the sync still running, if any, and reports its failure. The caller's own
    /// final fsync still follows: this one may have started before the last bytes.
    pub(crate) async fn finish(mut self) -> Result<()> {
        self.settle().await
    }

    async fn settle(&mut self) -> Result<()> {
        let Some(sync) = self.in_flight.take() else {
            return Ok(());
        };
        sync.await
            .map_err(|e| Error::io("fsync temp blob", std::io::Error::other(e)))?
            .map_err(|e| Error::io("fsync temp blob", e))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    use super::*;

    #[tokio::test]
    async fn syncs_run_in_steps_and_the_file_keeps_every_byte() {
        let mut file = tempfile::tempfile().expect("temp file");
        let mut writeback = Writeback::new(&file).expect("writeback");
        let piece = vec![7u8; 1 << 20];
        let mut written = 0u64;
        let mut started = 0;
        for _ in 0..40 {
            file.write_all(&piece).expect("write");
            written += piece.len() as u64;
            let before = writeback.synced_from;
            writeback.written(written).await.expect("sync");
            if writeback.synced_from != before {
                started += 1;
            }
        }
        writeback.finish().await.expect("last sync");
        assert!(
            (1..=2).contains(&started),
            "one sync per 16 MiB at most, {started} started"
        );
        file.rewind().expect("rewind");
        let mut back = Vec::new();
        file.read_to_end(&mut back).expect("read");
        assert_eq!(back.len(), 40 << 20);
        assert!(back.iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn a_small_file_starts_no_sync() {
        let file = tempfile::tempfile().expect("temp file");
        let mut writeback = Writeback::new(&file).expect("writeback");
        writeback.written(STEP - 1).await.expect("no sync");
        assert!(writeback.in_flight.is_none());
        writeback.finish().await.expect("nothing to wait for");
    }
}
