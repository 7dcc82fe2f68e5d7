//! Group commit for the embedded catalog: the writes of publishing (open, stage, commit, renew,
//! roll back) that arrive while one durable commit is under way share the next one.
//!
//! Every write is a *job*: a closure run on the single write connection. A leader task takes
//! the write connection, opens one `BEGIN IMMEDIATE` transaction, and runs every job queued at
//! that moment in turn, each inside a savepoint of its own:
//!
//! * a job whose work fails (`Err`) is rolled back to its savepoint: the other jobs of the
//!   batch never see its writes;
//! * a job that finishes (`Ok`) keeps its writes, even when what it answers is an error (an
//!   expiry it noticed is recorded, then the caller is told the transaction is not open);
//! * then one `COMMIT`, one WAL sync, for the whole batch, and only then is any job of the
//!   batch answered: nobody is told of a write that is not durable, and nobody is told
//!   anything decided on a write that may yet be lost. If the commit fails, every job of the
//!   batch is answered with that failure (nothing of the batch is in the catalog).
//!
//! A job's clock reading is taken when it starts, under the writer lock, as for any write.
//! The batch runs in a task of its own, so a caller that goes away (a client that hung up)
//! neither stops a batch half-way nor strands the jobs queued behind it. A job that panics
//! ends its batch (rolled back; its members' callers get an error) and a new leader takes the
//! queue on.
//!
//! With one publisher this costs one savepoint more than a plain transaction; with sixteen,
//! most of them share each sync, and the pages they all touch (the tail of the versions and
//! events indexes) are written to the WAL once per batch instead of once per commit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::*;

/// Jobs one batch takes at most: bounds how long the first of them waits for its answer.
const MAX_BATCH: usize = 128;

/// What a job's work came to. `Ok(answer)` keeps its writes and answers the caller with
/// `answer` (which may itself be an error); `Err` rolls its writes back and answers with it.
pub(super) type Outcome<T> = Result<Result<T>>;

/// A job as the leader runs it, its answer type erased. Given no connection it does no work
/// and only makes its caller's answer (the batch could not start).
type Job = Box<dyn for<'c> FnOnce(Option<&'c mut sqlx::SqliteConnection>, Timestamp) -> BoxFuture<'c, Ran> + Send>;

/// How a job's caller is answered once its batch's fate is known: `None` if the batch
/// committed (the job's own answer is given), `Some(failure)` if it did not.
type Answer = Box<dyn FnOnce(Option<Error>) + Send>;

/// A job that has run: whether its writes stay, whether its work failed for a full disk (a
/// reason the whole batch may share), and how to answer its caller.
struct Ran {
    keep: bool,
    storage_full: bool,
    answer: Answer,
}

#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<Queue>,
    /// Batches committed, and jobs answered through them (for tests and the debug log).
    batches: AtomicU64,
    jobs: AtomicU64,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Whether a leader task is running: it takes every job queued before it finds the queue
    /// empty, so a job queued while this is true is never stranded.
    leading: bool,
}

impl GroupCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The lock guards plain data and no code that can panic runs under it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// (batches committed, jobs answered through them) so far.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.batches.load(Ordering::Relaxed), self.jobs.load(Ordering::Relaxed))
    }

    /// Jobs waiting for a batch.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.lock().jobs.len()
    }
}

impl SqliteCatalog {
    /// Runs `work` as one job of a group commit (see the module's comment) and returns its
    /// answer once the batch it ran in is durable. The transactions `work` adds to the
    /// [`Expiries`] it is given are told once the batch is durable, if its writes were kept.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::SqliteConnection, Timestamp, &'c mut Expiries) -> BoxFuture<'c, Outcome<T>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn, now| {
            Box::pin(async move {
                let mut expired = Expiries::default();
                let (keep, result) = match conn {
                    None => (false, Err(not_run())),
                    Some(conn) => match work(conn, now, &mut expired).await {
                        Ok(result) => (true, result),
                        Err(e) => (false, Err(e)),
                    },
                };
                Ran {
                    keep,
                    storage_full: matches!(result, Err(Error::StorageFull { .. })),
                    answer: Box::new(move |failed: Option<Error>| {
                        // Told here, by the leader, rather than by the caller once answered:
                        // a caller that went away (a client that hung up) leaves its writes
                        // standing, and their expiries must still be told.
                        if keep && failed.is_none() {
                            expired.durable();
                        }
                        // The caller may have gone away; its writes stand regardless.
                        let _ = reply.send(match failed {
                            Some(e) => Err(e),
                            None => result,
                        });
                    }),
                }
            })
        });
        let lead = {
            let mut queue = self.group.lock();
            queue.jobs.push_back(job);
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            self.spawn_leader();
        }
        answer.await.unwrap_or_else(|_| Err(not_run()))
    }

    fn spawn_leader(&self) {
        // Made outside the task: a task dropped before it first runs (a runtime shutting
        // down) still gives leadership up.
        let leading = Leading {
            catalog: self.clone(),
            done: false,
        };
        let runtime = self.runtime.clone();
        runtime.spawn(async move {
            while leading.catalog.run_batch().await {}
            leading.finished();
        });
    }

    /// Runs one batch of the queued jobs; `false` once the queue is empty and leadership
    /// given up (in the same critical section, so no job can be queued unseen).
    async fn run_batch(&self) -> bool {
        // The connection first, the jobs second: every job queued while the previous batch
        // (or another writer) held the connection joins this batch.
        let conn = self.write_connection().await;
        let jobs: Vec<Job> = {
            let mut queue = self.group.lock();
            if queue.jobs.is_empty() {
                queue.leading = false;
                return false;
            }
            let take = queue.jobs.len().min(MAX_BATCH);
            queue.jobs.drain(..take).collect()
        };
        let count = jobs.len();
        let committed = match conn {
            Ok(conn) => self.run_jobs(conn, jobs).await,
            Err(e) => {
                tracing::warn!(error = %e, jobs = count, "no catalog write connection for a batch");
                refuse(jobs, e, self.clock.now()).await;
                None
            }
        };
        if let Some(answers) = committed {
            self.group.batches.fetch_add(1, Ordering::Relaxed);
            self.group.jobs.fetch_add(count as u64, Ordering::Relaxed);
            tracing::trace!(jobs = count, "catalog batch committed");
            for answer in answers {
                answer(None);
            }
        }
        true
    }

    /// Runs `jobs` in one transaction. Returns their answers to give if it committed;
    /// otherwise answers every job with the failure itself and returns `None`.
    async fn run_jobs(&self, conn: sqlx::pool::PoolConnection<Sqlite>, jobs: Vec<Job>) -> Option<Vec<Answer>> {
        let mut answers: Vec<Answer> = Vec::with_capacity(jobs.len());
        let mut pending = jobs.into_iter();
        let failure = match self.run_in_transaction(conn, &mut pending, &mut answers).await {
            Ok(()) => return Some(answers),
            Err(e) => e,
        };
        // Nothing of the batch was committed: its jobs, run or not, are answered with why.
        tracing::warn!(error = %failure, jobs = answers.len() + pending.len(), "catalog batch failed");
        for answer in answers {
            answer(Some(like(&failure)));
        }
        refuse(pending.collect(), failure, self.clock.now()).await;
        None
    }

    async fn run_in_transaction(
        &self,
        conn: sqlx::pool::PoolConnection<Sqlite>,
        jobs: &mut std::vec::IntoIter<Job>,
        answers: &mut Vec<Answer>,
    ) -> Result<()> {
        let mut tx = sqlx::Transaction::begin(conn, Some("BEGIN IMMEDIATE".into())).await?;
        sqlx::query("SAVEPOINT job").execute(&mut *tx).await?;
        while let Some(job) = jobs.next() {
            let ran = job(Some(&mut tx), self.clock.now()).await;
            answers.push(ran.answer);
            // The job's savepoint is settled and the next one's opened in one trip to sqlx's
            // SQLite thread (each trip costs more than the statements themselves). Either
            // statement fails if SQLite rolled the whole transaction back by itself (a full
            // disk, an I/O error): then the batch fails as a whole, as it must, and for the
            // job's own reason if that was a full disk (the statement only says the savepoint
            // is gone).
            let settle = match (ran.keep, jobs.len() > 0) {
                (true, true) => "RELEASE job; SAVEPOINT job",
                (true, false) => "RELEASE job",
                (false, true) => "ROLLBACK TO job; RELEASE job; SAVEPOINT job",
                (false, false) => "ROLLBACK TO job; RELEASE job",
            };
            if let Err(e) = sqlx::query(settle).execute(&mut *tx).await {
                return Err(match ran.storage_full {
                    true => Error::StorageFull {
                        context: "the catalog".into(),
                    },
                    false => e.into(),
                });
            }
        }
        self.commit(tx).await
    }
}

/// Why a job never ran: its batch could not start or ended early, or its leader went away.
fn not_run() -> Error {
    Error::CatalogUnavailable {
        source: "the catalog write did not run (its batch failed or was cut short); nothing of it was written".into(),
    }
}

/// A failure like `e`, for another job of the same batch: the same kind (a full disk, an
/// unreachable catalog, another catalog error) with its message.
fn like(e: &Error) -> Error {
    match e {
        Error::StorageFull { context } => Error::StorageFull {
            context: context.clone(),
        },
        Error::CatalogUnavailable { source } => Error::CatalogUnavailable {
            source: source.to_string().into(),
        },
        other => Error::Catalog {
            context: "committing a batch of catalog writes".into(),
            source: other.to_string().into(),
        },
    }
}

/// Answers jobs that will not run with `failure`'s kind.
async fn refuse(jobs: Vec<Job>, failure: Error, now: Timestamp) {
    for job in jobs {
        (job(None, now).await.answer)(Some(like(&failure)));
    }
}

/// Gives leadership up when the leader task ends without doing so itself: a job panicked
/// (a new leader takes the queue on), or the task was dropped by a runtime shutting down
/// (the jobs still queued are dropped, and their callers told so).
struct Leading {
    catalog: SqliteCatalog,
    done: bool,
}

impl Leading {
    /// The leader gave leadership up itself, with the queue empty.
    fn finished(mut self) {
        self.done = true;
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let panicking = std::thread::panicking();
        let (relead, stranded) = {
            let mut queue = self.catalog.group.lock();
            if panicking && !queue.jobs.is_empty() {
                (true, VecDeque::new())
            } else {
                queue.leading = false;
                (false, std::mem::take(&mut queue.jobs))
            }
        };
        // Outside the lock: dropping a job drops its reply, which may run its caller's code.
        drop(stranded);
        if relead {
            self.catalog.spawn_leader();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::SystemClock;

    async fn catalog() -> (tempfile::TempDir, SqliteCatalog) {
        let dir = tempfile::tempdir().expect("temp dir");
        let cat = SqliteCatalog::open(&dir.path().join("catalog.db"), Arc::new(SystemClock))
            .await
            .expect("catalog");
        cat.write(|tx, _, _| {
            Box::pin(async move {
                sqlx::query("CREATE TABLE marks (mark TEXT NOT NULL)")
                    .execute(&mut *tx)
                    .await?;
                Ok(Ok(()))
            })
        })
        .await
        .expect("marks table");
        (dir, cat)
    }

    /// A job that records `mark`, then answers `answer` (`Ok`: kept) or fails (`Err`: rolled
    /// back), or panics.
    fn mark(cat: &SqliteCatalog, mark: &'static str, end: End) -> tokio::task::JoinHandle<Result<&'static str>> {
        let cat = cat.clone();
        tokio::spawn(async move {
            cat.write(move |tx, _, _| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO marks (mark) VALUES (?)")
                        .bind(mark)
                        .execute(&mut *tx)
                        .await?;
                    match end {
                        End::Answer => Ok(Ok(mark)),
                        End::AnswerError => Ok(Err(Error::not_found(mark))),
                        End::Fail => Err(Error::not_found(mark)),
                        End::Panic => panic!("job {mark} panics, as this test wants"),
                        End::DiskFullRollsAllBack => {
                            // What SQLite may do by itself when a statement meets a full disk.
                            sqlx::query("ROLLBACK").execute(&mut *tx).await?;
                            Err(Error::StorageFull { context: mark.into() })
                        }
                    }
                })
            })
            .await
        })
    }

    #[derive(Clone, Copy)]
    enum End {
        Answer,
        AnswerError,
        Fail,
        Panic,
        DiskFullRollsAllBack,
    }

    async fn marks(cat: &SqliteCatalog) -> Vec<String> {
        sqlx::query_scalar("SELECT mark FROM marks ORDER BY mark")
            .fetch_all(&cat.read)
            .await
            .expect("marks")
    }

    /// Queues jobs while the write connection is held elsewhere (as by a long write), so they
    /// are all waiting when it is let go: then they make one batch.
    async fn while_the_writer_is_held<T>(cat: &SqliteCatalog, jobs: usize, queue: impl FnOnce() -> T) -> T {
        let (held, _) = cat.begin().await.expect("holding the writer");
        let queued = queue();
        tokio::time::timeout(Duration::from_secs(10), async {
            while cat.group.queued() < jobs {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the jobs queue up");
        held.rollback().await.expect("letting the writer go");
        queued
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_waiting_together_share_one_commit_and_each_is_answered_after_it() {
        let (_dir, cat) = catalog().await;
        let before = cat.group.counts();
        let tasks = while_the_writer_is_held(&cat, 20, || {
            (0..20)
                .map(|i| mark(&cat, ["a", "b", "c", "d", "e"][i % 5], End::Answer))
                .collect::<Vec<_>>()
        })
        .await;
        for task in tasks {
            task.await.expect("task").expect("answered");
        }
        let after = cat.group.counts();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (1, 20),
            "one commit for all 20"
        );
        assert_eq!(marks(&cat).await.len(), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_leaves_no_trace_and_its_batch_commits_the_rest() {
        let (_dir, cat) = catalog().await;
        let before = cat.group.counts();
        let [kept, failed, kept_but_refused] = while_the_writer_is_held(&cat, 3, || {
            [
                mark(&cat, "kept", End::Answer),
                mark(&cat, "failed", End::Fail),
                mark(&cat, "kept but refused", End::AnswerError),
            ]
        })
        .await;
        assert_eq!(kept.await.expect("task").expect("kept"), "kept");
        assert!(matches!(failed.await.expect("task"), Err(Error::NotFound { what }) if what == "failed"));
        assert!(
            matches!(kept_but_refused.await.expect("task"), Err(Error::NotFound { what }) if what == "kept but refused")
        );
        assert_eq!(cat.group.counts().0 - before.0, 1, "one batch");
        assert_eq!(marks(&cat).await, ["kept", "kept but refused"]);
    }

    /// Runs "before", a job that ends as `end`, and "after" as one batch, and checks that the
    /// whole batch failed (every caller answered as `failed` says, nothing committed) and that
    /// a write after it is neither stranded nor refused.
    async fn the_whole_batch_fails_and_writing_goes_on(end: End, failed: fn(&Error) -> bool) {
        let (_dir, cat) = catalog().await;
        let [before, failing, after] = while_the_writer_is_held(&cat, 3, || {
            [
                mark(&cat, "before", End::Answer),
                mark(&cat, "failing", end),
                mark(&cat, "after", End::Answer),
            ]
        })
        .await;
        for (task, name) in [(before, "before"), (failing, "failing"), (after, "after")] {
            let answer = task.await.expect("task");
            assert!(answer.as_ref().is_err_and(failed), "{name}: {answer:?}");
        }
        assert!(marks(&cat).await.is_empty(), "nothing of the batch was committed");
        let later = tokio::time::timeout(Duration::from_secs(10), mark(&cat, "later", End::Answer))
            .await
            .expect("a write after the failed batch is not stranded");
        assert_eq!(later.expect("task").expect("later"), "later");
        assert_eq!(marks(&cat).await, ["later"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_fails_its_whole_batch_and_later_writes_go_on() {
        the_whole_batch_fails_and_writing_goes_on(End::Panic, |e| matches!(e, Error::CatalogUnavailable { .. })).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_that_rolls_the_batch_back_is_every_jobs_answer() {
        the_whole_batch_fails_and_writing_goes_on(End::DiskFullRollsAllBack, |e| {
            matches!(e, Error::StorageFull { .. })
        })
        .await;
    }
}
