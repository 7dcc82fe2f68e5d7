//! The torture driver shared by the crash suite (SIGKILL) and the power-loss suite (a FUSE
//! layer that drops what was not fsynced): cycles of "start the real server, run every
//! workload at once, kill it at a random instant", and after each kill a check of everything
//! the clients were told and everything that is visible:
//!
//! * every acknowledged version (a 2xx a client saw) is committed, with exactly its files;
//! * every committed version is whole: exactly the files its name says it has (for Go, the
//!   upstream's info/mod/zip; for staging, every file of the artifact), every blob on disk
//!   with its size, and, read back through the server, every byte (sha256);
//! * versions never disappear, and an idempotency key never lands twice;
//! * every few cycles, and at the end, after gc: blob files are exactly the referenced ones,
//!   no temp file is left, no open transaction, staged row or unreferenced blob row.
//!
//! The kill instants come from a seeded RNG; the seed is printed and `INTACT_TORTURE_SEED`
//! replays its schedule (thread timing still varies, so a replay is close, not identical).

pub mod backend;
pub mod catalog;
pub mod content;
pub mod workloads;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use self::backend::Backend;
use self::catalog::{Snapshot, VersionKey};
use self::content::{Files, GoModules, GoUpstream, Sizes};
use self::workloads::{Ctx, Ledger};
use crate::harness::{Server, client, report, runtime};

/// What the suite runs and how hard.
pub struct Plan {
    /// Name in the reliability report.
    pub suite: &'static str,
    pub cycles: u64,
    /// A gc checkpoint every this many cycles (and at the end).
    pub checkpoint_every: u64,
    /// Kill after a random delay in this range (ms) once the workloads started.
    pub kill_after_ms: std::ops::Range<u64>,
    pub sizes: Sizes,
    pub publishers: usize,
    pub go_clients: usize,
    /// Builds staged per cycle.
    pub builds: usize,
}

/// How the server dies.
pub enum Death {
    Sigkill,
    /// SIGKILL, then the power cut of the filesystem under the data dir.
    PowerCut(intact_lossyfs::LossyFs),
}

pub fn seed() -> u64 {
    match std::env::var("INTACT_TORTURE_SEED") {
        Ok(s) => s.trim().parse().expect("INTACT_TORTURE_SEED must be an integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

pub struct Rig {
    pub plan: Plan,
    /// Upstreams, logs and config live here, outside the data dir.
    side: PathBuf,
    pub data: PathBuf,
    config: String,
    go: Arc<GoModules>,
    _go_upstream: GoUpstream,
    stage_root: PathBuf,
    pub rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    ledger: Arc<Mutex<Ledger>>,
    rng: StdRng,
    pub seed: u64,
    pub death: Death,
    pub backend: Backend,
    /// Expected files per version (computed once).
    expected: HashMap<VersionKey, Files>,
    /// Versions committed at the last check: none may disappear.
    seen: BTreeSet<VersionKey>,
    /// Versions whose bytes were read back through the server.
    read_back: BTreeSet<VersionKey>,
    staged_builds: Vec<String>,
    pub figures: Figures,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Figures {
    pub cycles: u64,
    pub kills: u64,
    pub power_cuts: u64,
    pub checkpoints: u64,
    pub versions_visible: u64,
    pub versions_read_back: u64,
    pub files_read_back: u64,
    pub blobs_statted: u64,
    pub orphaned_txn_waits: u64,
    /// Pending upload objects the kills left in the bucket (PostgreSQL + S3 only).
    pub pending_objects_left: u64,
}

impl Rig {
    /// `side`: a directory for upstreams and logs; `data`: the server's data dir (may be on
    /// the lossy filesystem).
    pub fn new(plan: Plan, side: &Path, data: &Path, death: Death, seed: u64) -> Rig {
        Self::on(plan, side, data, death, seed, |_| Backend::Embedded)
    }

    /// `new`, on the engines `backend` makes.
    pub fn on(
        plan: Plan,
        side: &Path,
        data: &Path,
        death: Death,
        seed: u64,
        backend: impl FnOnce(&tokio::runtime::Runtime) -> Backend,
    ) -> Rig {
        let go = Arc::new(GoModules::new(plan.sizes));
        let rt = runtime();
        let backend = backend(&rt);
        let go_upstream = {
            let _guard = rt.enter();
            GoUpstream::start(go.clone())
        };
        let stage_root = side.join("builds-upstream");
        std::fs::create_dir_all(&stage_root).expect("upstream dir");
        let config = format!(
            r#"{engines}
[store]
# Go proxy fetches take the default lease: a fetch killed mid-commit holds its version only
# this long after the restart.
default_lease_seconds = 5

# The workloads hammer one server from loopback: a 429 would be an anomaly here, and rates
# are tested on their own (crates/intact-server/tests/it/limits.rs).
[limits]
rate_per_address = {{ per_second = 0, burst = 0 }}

[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "goproxy"
kind = "proxy"
format = "go"
upstream = "{go}"
checksum_db = "off"
failure_cache_seconds = 1
fetch_timeout_seconds = 60

[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "file://{builds}"
failure_cache_seconds = 1
fetch_timeout_seconds = 60

[repo.artifacts]
{artifacts}
"#,
            go = go_upstream.base,
            builds = stage_root.display(),
            artifacts = content::STAGING_ARTIFACTS,
            engines = backend.config(),
        );
        println!(
            "{}: seed {seed} (replay with INTACT_TORTURE_SEED={seed}), {} cycles on {}",
            plan.suite,
            plan.cycles,
            backend.name()
        );
        Rig {
            plan,
            side: side.to_owned(),
            data: data.to_owned(),
            config,
            go,
            _go_upstream: go_upstream,
            stage_root,
            rt,
            http: client(),
            ledger: Arc::default(),
            rng: StdRng::seed_from_u64(seed),
            seed,
            death,
            backend,
            expected: HashMap::new(),
            seen: BTreeSet::new(),
            read_back: BTreeSet::new(),
            staged_builds: Vec::new(),
            figures: Figures::default(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn start(&self) -> Server {
        Server::start_with_env(
            &self.data,
            &self.side.join("server"),
            Some(&self.config),
            &["--gc-grace-seconds", "0"],
            &self.backend.env(),
        )
    }

    /// Kills the server (and cuts the power under it).
    fn kill(&mut self, server: Server) {
        server.kill9();
        self.figures.kills += 1;
        if let Death::PowerCut(fs) = &mut self.death {
            let cut = fs.power_cut().expect("power cut");
            self.figures.power_cuts += 1;
            if self.figures.power_cuts <= 3 || self.figures.power_cuts.is_multiple_of(50) {
                println!("power cut {}: {cut:?}", self.figures.power_cuts);
            }
        }
    }

    fn ctx(&self, server: &Server, cycle: u64) -> Ctx {
        Ctx {
            http: self.http.clone(),
            base: server.base.clone(),
            ledger: self.ledger.clone(),
            sizes: self.plan.sizes,
            go: self.go.clone(),
            cycle,
            networked_engines: matches!(self.backend, Backend::Shared(_)),
        }
    }

    /// Runs every workload on `server` and returns their handles.
    fn spawn_workloads(&mut self, server: &Server, cycle: u64) -> Vec<tokio::task::JoinHandle<()>> {
        let mut builds = Vec::new();
        for j in 0..self.plan.builds {
            let name = format!("c{cycle}/b{j}");
            let b = content::build(&name, self.plan.sizes);
            content::write_build(&self.stage_root, &name, &b);
            builds.push(name);
        }
        self.staged_builds.extend(builds.iter().cloned());
        let mut handles = Vec::new();
        for task in 0..self.plan.publishers {
            handles.push(self.rt.spawn(workloads::publisher(self.ctx(server, cycle), task)));
        }
        for task in 0..self.plan.go_clients {
            handles.push(self.rt.spawn(workloads::go_client(self.ctx(server, cycle), task)));
        }
        if self.plan.builds > 0 {
            handles.push(self.rt.spawn(workloads::stager(self.ctx(server, cycle), builds)));
        }
        handles
    }

    /// One cycle: start, read back what became visible, run the workloads, kill, check.
    pub fn cycle(&mut self, cycle: u64) {
        let server = self.start();
        self.read_back_new(&server);
        let handles = self.spawn_workloads(&server, cycle);
        let delay = self.rng.random_range(self.plan.kill_after_ms.clone());
        std::thread::sleep(Duration::from_millis(delay));
        self.kill(server);
        self.rt.block_on(async {
            for h in handles {
                if tokio::time::timeout(Duration::from_secs(60), h).await.is_err() {
                    panic!("a client did not notice the server's death within 60 s");
                }
            }
        });
        self.figures.cycles += 1;
        let snap = self.rt.block_on(catalog::read(&self.backend.catalog(&self.data)));
        self.check(&snap, cycle);
        // The last cycle's checkpoint is `finish`'s.
        if (cycle + 1).is_multiple_of(self.plan.checkpoint_every) && cycle + 1 < self.plan.cycles {
            self.checkpoint();
        }
    }

    /// The files `key` must hold, by the naming rules of the workloads.
    fn expected_of(&mut self, key: &VersionKey, metadata: &Value) -> Option<Files> {
        if let Some(f) = self.expected.get(key) {
            return Some(f.clone());
        }
        let (repo, name, version) = key;
        let files = match repo.as_str() {
            "files" => {
                let keyed = name.starts_with("t/ak") || name.starts_with("t/mk");
                let seed_key = if keyed {
                    metadata["job"].as_str()?
                } else {
                    version.as_str()
                };
                content::api_summary(name, seed_key, self.plan.sizes)
            }
            "goproxy" => match name.strip_prefix("@gomod/") {
                Some(module) => self.go.get(module, version).mod_only(),
                None => self.go.get(name, version).full(),
            },
            "builds" => {
                let b = content::build(name, self.plan.sizes);
                match version.as_str() {
                    "payload" => b.payload,
                    "suite" => b.suite,
                    _ => return None,
                }
            }
            _ => return None,
        };
        self.expected.insert(key.clone(), files.clone());
        Some(files)
    }

    /// Checks the catalog of the dead server against the ledger and the naming rules.
    fn check(&mut self, snap: &Snapshot, cycle: u64) {
        let mut violations = Vec::new();
        let mut digests: BTreeMap<String, u64> = BTreeMap::new();
        let mut job_versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, row) in &snap.versions {
            let (repo, name, version) = key;
            match self.expected_of(key, &row.metadata) {
                Some(want) if want == row.files => {}
                Some(want) => violations.push(format!(
                    "{repo}/{name}@{version} is not whole: holds {:?}, must hold {:?}",
                    row.files, want
                )),
                None => violations.push(format!("{repo}/{name}@{version}: a version no client published")),
            }
            if repo == "goproxy"
                && !name.starts_with('@')
                && row.metadata["h1"].as_str() != Some(self.go.get(name, version).h1.as_str())
            {
                violations.push(format!(
                    "{name}@{version}: stored h1 {} differs from upstream",
                    row.metadata["h1"]
                ));
            }
            if let Some(job) = row.metadata["job"].as_str() {
                job_versions
                    .entry(job.to_owned())
                    .or_default()
                    .push(format!("{name}@{version}"));
            }
            for (_, size, sha) in &row.files {
                digests.insert(sha.clone(), *size);
            }
        }
        for (job, versions) in &job_versions {
            if versions.len() > 1 {
                violations.push(format!(
                    "idempotency key {job} landed {} times: {versions:?}",
                    versions.len()
                ));
            }
        }
        {
            let l = self.ledger();
            for key in &l.acked {
                if !snap.versions.contains_key(key) {
                    violations.push(format!("acknowledged {}/{}@{} is gone", key.0, key.1, key.2));
                }
            }
            for (job, version) in &l.jobs_done {
                let landed = job_versions.get(job).and_then(|v| v.first());
                if landed.is_none_or(|l| !l.ends_with(&format!("@{version}"))) {
                    violations.push(format!(
                        "job {job} was acknowledged as version {version}, catalog has {landed:?}"
                    ));
                }
            }
            for ((module, version), zip) in &l.go_acked {
                let full = ("goproxy".to_owned(), module.clone(), version.clone());
                let mod_only = ("goproxy".to_owned(), format!("@gomod/{module}"), version.clone());
                let present = snap.versions.contains_key(&full) || (!zip && snap.versions.contains_key(&mod_only));
                if !present {
                    violations.push(format!("acknowledged Go fetch {module}@{version} (zip: {zip}) is gone"));
                }
            }
        }
        for key in &self.seen {
            if !snap.versions.contains_key(key) {
                violations.push(format!("{}/{}@{} was committed and disappeared", key.0, key.1, key.2));
            }
        }
        // Every blob a committed version names is stored with its size.
        let names: BTreeSet<String> = digests.keys().cloned().collect();
        let stored = self.rt.block_on(self.backend.sizes(&self.data, &names));
        for (sha, size) in &digests {
            match stored.get(sha).copied().flatten() {
                Some(n) if n == *size => {}
                Some(n) => violations.push(format!("blob {sha}: {n} bytes stored, {size} in the catalog")),
                None => violations.push(format!("blob {sha} of a committed version is not stored")),
            }
        }
        self.figures.blobs_statted += digests.len() as u64;
        self.seen = snap.versions.keys().cloned().collect();
        self.figures.versions_visible = self.seen.len() as u64;
        let mut l = self.ledger();
        l.violations
            .extend(violations.into_iter().map(|v| format!("cycle {cycle}: {v}")));
        if !l.violations.is_empty() {
            let shown: Vec<_> = l.violations.iter().take(20).cloned().collect();
            panic!(
                "{}: {} violation(s) after cycle {cycle} (seed {}, replay with INTACT_TORTURE_SEED={}):\n{}",
                self.plan.suite,
                l.violations.len(),
                self.seed,
                self.seed,
                shown.join("\n")
            );
        }
    }

    /// Reads back, through the server, every file of the versions that became visible since
    /// the last read-back, plus a sample of older ones; every byte must match.
    fn read_back_new(&mut self, server: &Server) {
        let mut todo: Vec<VersionKey> = self
            .seen
            .iter()
            .filter(|k| !self.read_back.contains(*k) && !k.1.starts_with('@'))
            .cloned()
            .collect();
        let older: Vec<&VersionKey> = self.read_back.iter().collect();
        for _ in 0..older.len().min(8) {
            todo.push(older[self.rng.random_range(0..older.len())].clone());
        }
        let mut problems = Vec::new();
        for key in todo {
            let Some(files) = self.expected.get(&key).cloned() else {
                continue;
            };
            let (repo, name, version) = &key;
            for (path, _, sha) in &files {
                let url = server.url(&format!("/api/v1/repos/{repo}/{name}/@v/{version}/{path}"));
                let (status, body) = self.rt.block_on(async {
                    let resp = self.http.get(url).send().await.expect("read back");
                    let status = resp.status();
                    (status, resp.bytes().await.expect("read back body"))
                });
                self.figures.files_read_back += 1;
                if !status.is_success() {
                    problems.push(format!(
                        "{repo}/{name}@{version}/{path}: {status} {}",
                        String::from_utf8_lossy(&body)
                    ));
                } else if content::sha256_hex(&body) != *sha {
                    problems.push(format!("{repo}/{name}@{version}/{path}: wrong bytes"));
                }
            }
            if self.read_back.insert(key) {
                self.figures.versions_read_back += 1;
            }
        }
        if !problems.is_empty() {
            self.ledger()
                .violations
                .extend(problems.iter().map(|p| format!("read back: {p}")));
            panic!(
                "{}: read-back failed (seed {}):\n{}",
                self.plan.suite,
                self.seed,
                problems.join("\n")
            );
        }
    }

    /// Starts the server, lets every lease a kill orphaned run out, collects garbage with no
    /// grace, re-hashes every committed blob (`verify`), stops it, and counts what is left:
    /// exactly the referenced blobs, nothing else.
    pub fn checkpoint(&mut self) {
        self.figures.checkpoints += 1;
        for attempt in 0..2 {
            let server = self.start();
            self.read_back_new(&server);
            // Leases here: 2 s (publishers), 5 s (the Go proxy's default lease).
            std::thread::sleep(Duration::from_secs(6));
            let gc_at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let gc: Value = self.rt.block_on(async {
                let resp = self
                    .http
                    .post(server.url("/api/v1/admin/gc"))
                    .json(&json!({"grace_seconds": 0}))
                    .send()
                    .await
                    .expect("gc");
                assert!(resp.status().is_success(), "gc: {}", resp.status());
                resp.json().await.expect("gc json")
            });
            // Every blob a committed version names, re-hashed by the server.
            let verify: Value = self.rt.block_on(async {
                self.http
                    .post(server.url("/api/v1/admin/verify"))
                    .json(&json!({}))
                    .send()
                    .await
                    .expect("verify")
                    .json()
                    .await
                    .expect("verify json")
            });
            assert_eq!(
                verify["ok"],
                json!(true),
                "{}: verify at checkpoint (seed {}): {verify}",
                self.plan.suite,
                self.seed
            );
            // Stopped without a power cut: gc's deletions are not made durable one by one
            // (an orphan file coming back after a power cut is swept by the next `gc` or the
            // background sweeper's next orphan sweep).
            server.kill9();
            let snap = self.rt.block_on(catalog::read(&self.backend.catalog(&self.data)));
            let left = &snap.leftovers;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            // A transaction still open must have been within its lease when gc ran.
            if attempt == 0 && left.open_transactions > 0 && left.open.iter().all(|t| t.4 > gc_at_ms) {
                // A transaction orphaned by a kill on a shared catalog (start-up leaves open
                // transactions alone: they might be a live replica's) holds its worker lease
                // until it lapses: wait it out.
                let until = left.open.iter().map(|t| t.4).max().unwrap_or(now_ms);
                println!("checkpoint: waiting out orphaned transactions {:?}", left.open);
                self.figures.orphaned_txn_waits += 1;
                std::thread::sleep(Duration::from_millis((until - now_ms).max(0) as u64 + 1500));
                continue;
            }
            let referenced: BTreeSet<String> = snap
                .versions
                .values()
                .flat_map(|v| v.files.iter().map(|f| f.2.clone()))
                .collect();
            let on_disk = self.rt.block_on(self.backend.stored(&self.data));
            let mut problems = Vec::new();
            if let Some(n) = self.rt.block_on(self.backend.sweep_pending_left_by_kills()) {
                self.figures.pending_objects_left += n as u64;
            }
            if on_disk != referenced {
                let extra: Vec<_> = on_disk.difference(&referenced).take(5).collect();
                let missing: Vec<_> = referenced.difference(&on_disk).take(5).collect();
                problems.push(format!(
                    "blob files {} vs referenced {}: extra {extra:?}, missing {missing:?} (gc: {gc})",
                    on_disk.len(),
                    referenced.len()
                ));
            }
            for dir in ["tmp", "go-tmp", "staging/tmp"] {
                let left: Vec<_> = std::fs::read_dir(self.data.join(dir))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                if !left.is_empty() {
                    problems.push(format!("{dir} still holds {left:?}"));
                }
            }
            if left.open_transactions != 0 || left.staged_rows != 0 || left.unreferenced_blob_rows != 0 {
                problems.push(format!("catalog leftovers after gc: {left:?}"));
            }
            if !problems.is_empty() {
                panic!(
                    "{}: checkpoint after cycle {} failed (seed {}):\n{}",
                    self.plan.suite,
                    self.figures.cycles,
                    self.seed,
                    problems.join("\n")
                );
            }
            println!(
                "{}: checkpoint after {} cycles: {} versions, {} blobs, nothing left over",
                self.plan.suite,
                self.figures.cycles,
                snap.versions.len(),
                on_disk.len()
            );
            return;
        }
        panic!(
            "{}: transactions still open after waiting out their leases",
            self.plan.suite
        );
    }

    /// The last round: every retry runs to completion on a server left alive (idempotent jobs
    /// land exactly once, in-doubt fetches and stagings succeed), then a final check and
    /// checkpoint.
    pub fn finish(&mut self, started: Instant) {
        let server = self.start();
        self.read_back_new(&server);
        let cycle = self.figures.cycles;
        let handles = self.spawn_drain(&server, cycle);
        self.rt.block_on(async {
            for h in handles {
                tokio::time::timeout(Duration::from_secs(300), h)
                    .await
                    .expect("the final round finishes")
                    .expect("join");
            }
        });
        server.kill9();
        let snap = self.rt.block_on(catalog::read(&self.backend.catalog(&self.data)));
        self.check(&snap, cycle);
        {
            let l = self.ledger();
            assert!(
                l.jobs_pending.is_empty(),
                "jobs never acknowledged: {:?} (answers other than 2xx: {:?})",
                l.jobs_pending,
                l.anomalies
            );
            assert!(
                l.go_pending.is_empty(),
                "Go fetches never acknowledged: {:?}",
                l.go_pending
            );
            assert!(
                l.stage_pending.is_empty(),
                "stagings never acknowledged: {:?}",
                l.stage_pending
            );
        }
        self.checkpoint();
        let l = self.ledger();
        let fs_stats = match &self.death {
            Death::PowerCut(fs) => Some(fs.stats()),
            Death::Sigkill => None,
        };
        let figures = json!({
            "engines": self.backend.name(),
            "seed": self.seed,
            "seconds": started.elapsed().as_secs(),
            "cycles": self.figures.cycles,
            "kills": self.figures.kills,
            "power_cuts": self.figures.power_cuts,
            "checkpoints": self.figures.checkpoints,
            "versions_acknowledged": l.acked.len(),
            "versions_committed": self.figures.versions_visible,
            "versions_read_back": self.figures.versions_read_back,
            "files_read_back": self.figures.files_read_back,
            "blobs_statted": self.figures.blobs_statted,
            "idempotent_jobs": l.jobs_done.len(),
            "counts": l.counts,
            "go_fetches_acknowledged": l.go_acked.len(),
            "stagings_acknowledged": l.staged.len(),
            "orphaned_txn_waits": self.figures.orphaned_txn_waits,
            "pending_objects_left": self.figures.pending_objects_left,
            "anomalies": l.anomalies,
            "lossyfs": fs_stats.map(|s| json!({"file_syncs": s.file_syncs, "dir_syncs": s.dir_syncs,
                "inodes_lost": s.inodes_lost, "files_reverted": s.files_reverted, "dirs_reverted": s.dirs_reverted})),
            "violations": l.violations.len(),
        });
        report(self.plan.suite, figures);
    }

    /// The final round's clients: only retries, each to completion.
    fn spawn_drain(&mut self, server: &Server, cycle: u64) -> Vec<tokio::task::JoinHandle<()>> {
        let ctx = self.ctx(server, cycle);
        let publishers = self.plan.publishers;
        let go_clients = self.plan.go_clients;
        vec![self.rt.spawn(async move {
            for task in 0..publishers {
                workloads::drain_jobs(&ctx, task).await;
            }
            for task in 0..go_clients {
                workloads::drain_go(&ctx, task).await;
            }
            workloads::stager(ctx.clone(), Vec::new()).await;
        })]
    }
}
