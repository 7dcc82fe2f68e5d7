//! Staging jobs: one per run of an artifact's staging (a single-flight leader), with live
//! progress for `GET /api/v1/jobs/{id}` and the status endpoint. Finished jobs are kept for
//! an hour (at most [`MAX_FINISHED`]) so a client polling a background job sees its outcome.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intact_core::{Name, RepoName, Timestamp, Version};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::error::StageError;

/// How long a finished job stays visible.
pub(crate) const RETENTION: Duration = Duration::from_secs(3600);
/// At most this many finished jobs are kept, oldest dropped first.
pub(crate) const MAX_FINISHED: usize = 10_000;

const UNKNOWN: u64 = u64::MAX;

/// The (repo, name, artifact) a job stages.
pub(crate) type JobKey = (RepoName, Name, Version);

#[derive(Debug, Clone)]
pub(crate) enum JobOutcome {
    Staged(Value),
    Failed { error: StageError },
}

#[derive(Debug)]
pub(crate) struct Job {
    pub id: String,
    pub key: JobKey,
    pub started_at: Timestamp,
    bytes_done: AtomicU64,
    /// `UNKNOWN` until every upstream file's size is known.
    bytes_total: AtomicU64,
    phase: Mutex<&'static str>,
    /// Set once, when the job ends.
    finished: Mutex<Option<(Timestamp, JobOutcome)>>,
}

impl Job {
    pub fn add_done(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    pub fn set_total(&self, total: Option<u64>) {
        self.bytes_total.store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    pub fn set_phase(&self, phase: &'static str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }

    pub fn finished(&self) -> Option<(Timestamp, JobOutcome)> {
        self.finished.lock().ok().and_then(|f| f.clone())
    }

    pub fn to_json(&self) -> Value {
        let (repo, name, artifact) = &self.key;
        let mut v = json!({
            "id": self.id,
            "repo": repo,
            "name": name,
            "artifact": artifact,
            "state": "staging",
            "phase": self.phase.lock().map(|p| *p).unwrap_or("staging"),
            "bytes_done": self.bytes_done(),
            "started_at": self.started_at,
        });
        let total = self.bytes_total.load(Ordering::Relaxed);
        if total != UNKNOWN {
            v["bytes_total"] = json!(total);
        }
        if let Some((at, outcome)) = self.finished() {
            v["finished_at"] = json!(at);
            match outcome {
                JobOutcome::Staged(summary) => {
                    v["state"] = json!("staged");
                    v["phase"] = json!("done");
                    v["summary"] = summary;
                }
                JobOutcome::Failed { error } => {
                    v["state"] = json!("failed");
                    v["phase"] = json!("done");
                    v["error"] = json!(error.to_string());
                    v["code"] = json!(error.code());
                }
            }
        }
        v
    }
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Job>>,
    /// Job ids, oldest first, for pruning.
    order: VecDeque<String>,
    /// The newest job of each key.
    latest: HashMap<JobKey, Arc<Job>>,
}

/// The registry of jobs.
pub(crate) struct Jobs {
    inner: Mutex<Inner>,
    next: AtomicU64,
    /// Distinguishes this process's job ids from an earlier one's.
    epoch: String,
    /// Bumped whenever a job finishes: wakes status long polls.
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    pub fn new(now: Timestamp) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            next: AtomicU64::new(1),
            epoch: format!("{:x}", now.millis()),
            changed: watch::Sender::new(0),
        }
    }

    /// Registers a job that starts now.
    pub fn start(&self, key: JobKey, now: Timestamp) -> Arc<Job> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(Job {
            // The random part makes ids unguessable: an id is what lets a caller watch a job
            // (and learn which repo it stages into).
            id: format!("{}-{n}-{:016x}", self.epoch, rand::random::<u64>()),
            key: key.clone(),
            started_at: now,
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(UNKNOWN),
            phase: Mutex::new("starting"),
            finished: Mutex::new(None),
        });
        if let Ok(mut g) = self.inner.lock() {
            Self::prune(&mut g, now);
            g.by_id.insert(job.id.clone(), job.clone());
            g.order.push_back(job.id.clone());
            g.latest.insert(key, job.clone());
        }
        job
    }

    /// Records a job's end and wakes status waiters.
    pub fn finish(&self, job: &Job, outcome: JobOutcome, now: Timestamp) {
        if let Ok(mut f) = job.finished.lock() {
            *f = Some((now, outcome));
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.inner.lock().ok()?.by_id.get(id).cloned()
    }

    pub fn latest(&self, key: &JobKey) -> Option<Arc<Job>> {
        self.inner.lock().ok()?.latest.get(key).cloned()
    }

    /// Every job this process remembers (running ones, and finished ones until pruned),
    /// oldest first.
    pub fn all(&self) -> Vec<Arc<Job>> {
        let Ok(g) = self.inner.lock() else { return Vec::new() };
        g.order.iter().filter_map(|id| g.by_id.get(id).cloned()).collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn prune(g: &mut Inner, now: Timestamp) {
        let cutoff = now.minus(RETENTION);
        let finished = g.by_id.values().filter(|j| j.finished().is_some()).count();
        let mut excess = finished.saturating_sub(MAX_FINISHED);
        let mut keep = VecDeque::with_capacity(g.order.len());
        while let Some(id) = g.order.pop_front() {
            let Some(job) = g.by_id.get(&id).cloned() else {
                continue;
            };
            let drop_it = match job.finished() {
                Some((at, _)) if at < cutoff => true,
                Some(_) if excess > 0 => {
                    excess -= 1;
                    true
                }
                _ => false,
            };
            if drop_it {
                g.by_id.remove(&id);
                if g.latest.get(&job.key).is_some_and(|l| Arc::ptr_eq(l, &job)) {
                    g.latest.remove(&job.key);
                }
            } else {
                keep.push_back(id);
            }
        }
        g.order = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: &str) -> JobKey {
        (
            RepoName::parse("builds").expect("repo"),
            Name::parse("b/1").expect("name"),
            Version::parse(a).expect("version"),
        )
    }

    #[test]
    fn jobs_report_progress_and_outcome_and_are_pruned() {
        let jobs = Jobs::new(Timestamp(1_000));
        let j = jobs.start(key("full"), Timestamp(1_000));
        j.set_total(Some(100));
        j.add_done(40);
        j.set_phase("downloading");
        let v = j.to_json();
        assert_eq!(v["state"], "staging");
        assert_eq!(v["bytes_done"], 40);
        assert_eq!(v["bytes_total"], 100);
        assert_eq!(v["phase"], "downloading");
        jobs.finish(
            &j,
            JobOutcome::Failed {
                error: StageError::Upstream("boom".into()),
            },
            Timestamp(2_000),
        );
        let v = jobs.get(&j.id).expect("kept").to_json();
        assert_eq!(v["state"], "failed");
        assert_eq!(v["code"], "upstream");
        assert!(jobs.latest(&key("full")).is_some());
        // An hour later, starting another job prunes the finished one.
        let later = Timestamp(2_000).plus(RETENTION).plus(Duration::from_secs(1));
        let j2 = jobs.start(key("other"), later);
        assert!(jobs.get(&j.id).is_none());
        assert!(jobs.latest(&key("full")).is_none());
        assert!(jobs.get(&j2.id).is_some());
        assert_ne!(j.id, j2.id);
    }
}
