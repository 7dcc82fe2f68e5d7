//! The background sweeper: garbage collection spread out in bounded pages, resumable, and
//! done by one process at a time.
//!
//! A pass walks the catalog's blob records in digest order a page at a time, deleting those
//! no version or transaction references (each checked again under its digest's exclusion),
//! and, when the orphan sweep is due, walks the blob store's listing the same way, deleting
//! files the catalog has no record of. After every page the cursor is saved in the catalog
//! with the lease renewed: a restart (or another replica, once the lease lapses) resumes
//! after the last page done, and nothing is ever listed into memory whole. Between passes
//! the lease is given up, so any replica may run the next one when it is due.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use intact_core::{Digest, Timestamp};
use rand::RngCore;
use tokio::sync::watch;

use crate::catalog::{FinishedPass, SweepCounts, SweepPhase, SweepProgress, SweeperRecord};
use crate::{FLIGHT_RETENTION, Result, Store};

/// How long a sweeper's claim lasts without a page saved. A page never takes this long
/// unless the sweeper stalled; then another process may take over (safe even if the stalled
/// one wakes: every delete is checked under its digest's exclusion).
pub const SWEEPER_LEASE: Duration = Duration::from_secs(120);

/// After a failure, the sweeper tries again this much later (the default of
/// [`SweeperSettings::retry_after`]).
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// A pass that fails this many times in a row is given up (recorded with its error, so the
/// status shows it) instead of being resumed at the same place for ever: the closing work
/// (pending files, pruning) still runs, and the next pass is due as usual.
const ATTEMPTS_PER_PASS: u32 = 3;

/// How the background sweeper paces itself.
#[derive(Debug, Clone)]
pub struct SweeperSettings {
    /// From the end of one pass to the start of the next.
    pub every: Duration,
    /// How often a pass also sweeps orphan files (`None`: never in the background; `intact
    /// gc` still does).
    pub orphans_every: Option<Duration>,
    /// Blob records (or listed files) per page.
    pub page: u32,
    /// Rest between pages, leaving the disk and the catalog to requests.
    pub pause: Duration,
    /// Unreferenced blobs younger than this are kept.
    pub grace: Duration,
    /// After a failure, try again this much later ([`RETRY_AFTER`]).
    pub retry_after: Duration,
}

/// Why a pass stopped before its end.
enum Stop {
    /// Shutting down: the progress is saved, the lease given up.
    Shutdown,
    /// Another process holds the lease now.
    LostLease,
}

impl Store {
    /// The sweeper's record: whether a pass runs, where it is, how the last one went.
    pub async fn sweeper_status(&self) -> Result<SweeperRecord> {
        self.catalog().sweeper().await
    }

    /// Runs the background sweeper until `shutdown`: a pass whenever one is due and this
    /// process can take the lease.
    pub async fn run_sweeper(self: Arc<Self>, settings: SweeperSettings, mut shutdown: watch::Receiver<bool>) {
        // The embedded catalog has one writer, this process (it holds the data dir): a lease
        // left by a dead predecessor is its own to take back at once, so its holder name is
        // fixed. Replicas on a shared catalog each hold under their own name.
        let holder = if self.is_sole_writer() {
            "embedded".to_owned()
        } else {
            format!("sweeper-{:016x}", rand::rng().next_u64())
        };
        let mut failures = 0;
        loop {
            let wait = match self.sweep_when_due(&settings, &holder, &mut shutdown).await {
                Ok(wait) => {
                    failures = 0;
                    wait
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, attempt = failures, "background gc failed; trying again later");
                    if failures >= ATTEMPTS_PER_PASS {
                        failures = 0;
                        if let Err(e2) = self.give_up_pass(&settings, &holder, &e.to_string()).await {
                            tracing::warn!(error = %e2, "recording a failed gc pass failed");
                        }
                    }
                    settings.retry_after
                }
            };
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Err(e) = self.catalog().release_sweeper(&holder).await {
            tracing::debug!(error = %e, "giving up the sweeper lease at shutdown failed (it lapses)");
        }
    }

    /// Runs (or resumes) a pass if one is due and the lease is free; returns how long to
    /// wait before looking again.
    async fn sweep_when_due(
        &self,
        settings: &SweeperSettings,
        holder: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Duration> {
        let catalog = self.catalog().clone();
        let Some(mut progress) = catalog.claim_sweeper(holder, SWEEPER_LEASE).await? else {
            // Another process sweeps; look again once its lease could have lapsed.
            return Ok(SWEEPER_LEASE.min(settings.every));
        };
        let now = self.now();
        if progress.phase == SweepPhase::Idle {
            let due = progress
                .last_pass
                .as_ref()
                .map_or(now, |last| last.finished.plus(settings.every));
            // A due time more than one interval away means a clock moved back since the
            // last pass ended: not a reason to stop collecting.
            if due > now && until(now, due) <= settings.every {
                catalog.release_sweeper(holder).await?;
                return Ok(until(now, due));
            }
            let sweeping_orphans = settings
                .orphans_every
                .is_some_and(|every| progress.last_orphan_sweep.is_none_or(|last| last.plus(every) <= now));
            progress = SweepProgress {
                pass: progress.pass + 1,
                phase: SweepPhase::Blobs,
                cursor: None,
                pass_started: Some(now),
                sweeping_orphans,
                resumed: 0,
                so_far: SweepCounts::default(),
                ..progress
            };
            tracing::info!(pass = progress.pass, orphans = sweeping_orphans, "gc pass started");
        } else {
            progress.resumed += 1;
            tracing::info!(
                pass = progress.pass,
                phase = ?progress.phase,
                after = ?progress.cursor.map(|d| d.to_hex()),
                "gc pass resumed where it stopped"
            );
        }
        if !catalog.save_sweeper(holder, &progress, SWEEPER_LEASE).await? {
            return Ok(SWEEPER_LEASE);
        }
        match self.sweep_pages(settings, holder, &mut progress, shutdown).await? {
            Ok(()) => {}
            Err(Stop::Shutdown) => return Ok(Duration::ZERO),
            Err(Stop::LostLease) => {
                tracing::warn!(pass = progress.pass, "gc pass taken over by another process");
                return Ok(SWEEPER_LEASE);
            }
        }
        self.finish_pass(settings, holder, progress).await?;
        Ok(settings.every)
    }

    /// Works through the pass's pages, saving the cursor after each.
    async fn sweep_pages(
        &self,
        settings: &SweeperSettings,
        holder: &str,
        progress: &mut SweepProgress,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<std::result::Result<(), Stop>> {
        let catalog = self.catalog().clone();
        let page_size = settings.page.max(1);
        // The orphan walk's listing lives across pages; a restart lists again from the cursor.
        let mut listing: Option<BoxStream<'_, Result<Digest>>> = None;
        loop {
            if *shutdown.borrow() {
                catalog.release_sweeper(holder).await?;
                return Ok(Err(Stop::Shutdown));
            }
            match progress.phase {
                SweepPhase::Idle => return Ok(Ok(())),
                SweepPhase::Blobs => {
                    let (page, swept) = self
                        .sweep_blob_page(progress.cursor.as_ref(), settings.grace, page_size)
                        .await?;
                    let counts = &mut progress.so_far;
                    counts.pages += 1;
                    counts.blobs_checked += page.scanned;
                    counts.blobs_deleted += swept.blobs_deleted;
                    counts.bytes_deleted += swept.bytes_deleted;
                    if page.scanned < u64::from(page_size) {
                        progress.cursor = None;
                        progress.phase = if progress.sweeping_orphans {
                            SweepPhase::Orphans
                        } else {
                            SweepPhase::Idle
                        };
                    } else {
                        progress.cursor = page.last;
                    }
                }
                SweepPhase::Orphans => {
                    let stream = listing.get_or_insert_with(|| self.blobs().list(progress.cursor));
                    let mut files = Vec::with_capacity(page_size as usize);
                    while files.len() < page_size as usize {
                        match stream.next().await {
                            Some(d) => files.push(d?),
                            None => break,
                        }
                    }
                    let swept = catalog.sweep_orphans(&files, self.blobs().as_ref()).await?;
                    let counts = &mut progress.so_far;
                    counts.pages += 1;
                    counts.files_listed += files.len() as u64;
                    counts.orphan_blobs_deleted += swept.blobs_deleted;
                    counts.bytes_deleted += swept.bytes_deleted;
                    if files.len() < page_size as usize {
                        progress.cursor = None;
                        progress.phase = SweepPhase::Idle;
                        progress.last_orphan_sweep = Some(self.now());
                    } else {
                        progress.cursor = files.last().copied();
                    }
                }
            }
            if progress.phase == SweepPhase::Idle {
                // The last bookkeeping is `finish_pass`'s, saved with the pass's end.
                return Ok(Ok(()));
            }
            if !catalog.save_sweeper(holder, progress, SWEEPER_LEASE).await? {
                return Ok(Err(Stop::LostLease));
            }
            tracing::debug!(pass = progress.pass, phase = ?progress.phase, pages = progress.so_far.pages, "gc page done");
            if !settings.pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(settings.pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Ends the pass under way as failed (when this process can hold the lease).
    async fn give_up_pass(&self, settings: &SweeperSettings, holder: &str, error: &str) -> Result<()> {
        let Some(mut progress) = self.catalog().claim_sweeper(holder, SWEEPER_LEASE).await? else {
            return Ok(());
        };
        if progress.phase == SweepPhase::Idle {
            return self.catalog().release_sweeper(holder).await;
        }
        tracing::error!(pass = progress.pass, phase = ?progress.phase, error, "gc pass given up after {ATTEMPTS_PER_PASS} failures");
        progress.sweeping_orphans = false;
        progress.error = Some(error.to_owned());
        self.finish_pass(settings, holder, progress).await
    }

    /// The pass's cheap closing work, then its record, then the lease given up.
    async fn finish_pass(&self, settings: &SweeperSettings, holder: &str, mut progress: SweepProgress) -> Result<()> {
        let catalog = self.catalog().clone();
        let counts = &mut progress.so_far;
        counts.pending_files_removed += self
            .blobs()
            .sweep_pending(settings.grace.max(Duration::from_secs(3600)))
            .await?;
        counts.transactions_pruned += catalog.prune_txns(self.config().txn_retention).await?;
        counts.flights_pruned += catalog.prune_flights(FLIGHT_RETENTION).await?;
        let finished = FinishedPass {
            pass: progress.pass,
            started: progress.pass_started.unwrap_or_else(|| self.now()),
            finished: self.now(),
            resumed: progress.resumed,
            swept_orphans: progress.sweeping_orphans && progress.error.is_none(),
            counts: std::mem::take(&mut progress.so_far),
            error: progress.error.take(),
        };
        crate::telemetry::gc_ran(
            "background",
            finished.counts.blobs_deleted + finished.counts.orphan_blobs_deleted,
            finished.counts.bytes_deleted,
        );
        tracing::info!(
            pass = finished.pass,
            blobs_checked = finished.counts.blobs_checked,
            blobs_deleted = finished.counts.blobs_deleted,
            orphans_deleted = finished.counts.orphan_blobs_deleted,
            bytes_deleted = finished.counts.bytes_deleted,
            seconds = (finished.finished.millis() - finished.started.millis()) as f64 / 1000.0,
            resumed = finished.resumed,
            "gc pass finished"
        );
        progress.phase = SweepPhase::Idle;
        progress.cursor = None;
        progress.pass_started = None;
        progress.sweeping_orphans = false;
        progress.resumed = 0;
        progress.last_pass = Some(finished);
        if catalog.save_sweeper(holder, &progress, SWEEPER_LEASE).await? {
            catalog.release_sweeper(holder).await?;
        }
        Ok(())
    }
}

fn until(now: Timestamp, due: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(due.millis().saturating_sub(now.millis())).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use async_trait::async_trait;
    use tokio::io::AsyncRead;

    use super::*;
    use crate::blob::{BlobRead, PendingBlob, Progress};
    use crate::{BlobStore, Error, ManualClock, MemoryBlobStore, SqliteCatalog, StoreConfig};

    /// A blob store whose listing always fails (an unreadable shard, a bucket that refuses
    /// to list): the orphan walk can never get past its first page.
    struct UnlistableBlobs(MemoryBlobStore);

    #[async_trait]
    impl BlobStore for UnlistableBlobs {
        async fn write(
            &self,
            body: &mut (dyn AsyncRead + Send + Unpin),
            progress: Option<Progress<'_>>,
        ) -> Result<PendingBlob> {
            self.0.write(body, progress).await
        }
        async fn persist(&self, pending: PendingBlob) -> Result<()> {
            self.0.persist(pending).await
        }
        async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
            self.0.size(digest).await
        }
        async fn sizes(&self, digests: &[Digest]) -> Result<HashMap<Digest, u64>> {
            self.0.sizes(digests).await
        }
        async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<BlobRead> {
            self.0.read(digest, range).await
        }
        async fn delete(&self, digest: &Digest) -> Result<()> {
            self.0.delete(digest).await
        }
        async fn quarantine(&self, digest: &Digest) -> Result<bool> {
            self.0.quarantine(digest).await
        }
        fn list(&self, _after: Option<Digest>) -> BoxStream<'_, Result<Digest>> {
            futures::stream::once(async {
                Err(Error::io(
                    "listing blobs",
                    std::io::Error::new(std::io::ErrorKind::PermissionDenied, "shard unreadable"),
                ))
            })
            .boxed()
        }
        async fn sweep_pending(&self, older_than: Duration) -> Result<u64> {
            self.0.sweep_pending(older_than).await
        }
        async fn put_piece(&self, upload: &str, bytes: bytes::Bytes) -> Result<String> {
            self.0.put_piece(upload, bytes).await
        }
        async fn read_piece(&self, piece: &str) -> Result<crate::BlobBody> {
            self.0.read_piece(piece).await
        }
        async fn delete_piece(&self, piece: &str) -> Result<()> {
            self.0.delete_piece(piece).await
        }
        async fn delete_pieces(&self, upload: &str) -> Result<u64> {
            self.0.delete_pieces(upload).await
        }
    }

    /// A pass whose orphan walk fails every time is given up after a few attempts, recorded
    /// with its error, instead of being resumed at the same place for ever (which kept the
    /// blob walk and the pruning of every later pass from ever running).
    #[tokio::test]
    async fn a_pass_that_keeps_failing_is_given_up_and_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
        let catalog = SqliteCatalog::open(&dir.path().join("catalog.db"), clock.clone())
            .await
            .expect("catalog");
        let store = Arc::new(Store::new(
            Arc::new(catalog),
            Arc::new(UnlistableBlobs(MemoryBlobStore::new())),
            clock,
            StoreConfig::default(),
        ));
        let settings = SweeperSettings {
            every: Duration::from_secs(3600),
            orphans_every: Some(Duration::from_secs(3600)),
            page: 10,
            pause: Duration::ZERO,
            grace: Duration::ZERO,
            retry_after: Duration::from_millis(10),
        };
        let (stop, stopped) = watch::channel(false);
        let sweeper = tokio::spawn(store.clone().run_sweeper(settings, stopped));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let last = loop {
            let record = store.sweeper_status().await.expect("status");
            if let Some(last) = record.progress.last_pass {
                break last;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the failing pass was never given up: {record:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        stop.send(true).expect("stop");
        sweeper.await.expect("sweeper");
        let error = last.error.expect("the pass records why it was given up");
        assert!(error.contains("shard unreadable"), "{error}");
        assert!(!last.swept_orphans);
        let record = store.sweeper_status().await.expect("status");
        assert_eq!(record.progress.phase, SweepPhase::Idle);
        assert!(record.progress.last_orphan_sweep.is_none(), "{record:?}");
    }
}
