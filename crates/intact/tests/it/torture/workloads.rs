//! The clients the torture runs against the server until it dies: artifact API publishers
//! (transactions and multipart, with and without idempotency keys), Go module fetches through
//! a proxy repo, and staging requests. Each records what the server acknowledged (a 2xx it
//! saw) in the ledger, and what it sent without an answer, to be retried later.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::content::{self, GoModules, Sizes, sha256_hex};

/// Idempotent publishes not yet acknowledged: retried with the same key after every restart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Job {
    pub multipart: bool,
    pub task: usize,
    pub name: String,
    pub key: String,
}

/// What the clients saw, across every cycle.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Versions a client saw acknowledged: (repo, name, version).
    pub acked: BTreeSet<(String, String, String)>,
    /// Idempotency key -> the version its acknowledged publish landed on.
    pub jobs_done: BTreeMap<String, String>,
    pub jobs_pending: BTreeSet<Job>,
    /// Go fetches acknowledged: (module, version) -> whether the zip was (a complete version).
    pub go_acked: BTreeMap<(String, String), bool>,
    /// Go fetches sent without an answer: (task, module, version, with zip).
    pub go_pending: BTreeSet<(usize, String, String, bool)>,
    /// Staging requests acknowledged, and sent without an answer: (build, artifact).
    pub staged: BTreeSet<(String, String)>,
    pub stage_pending: BTreeSet<(String, String)>,
    pub counts: Counts,
    /// Answers that break a promise (wrong bytes, 5xx on a healthy server...).
    pub violations: Vec<String>,
    /// Unexpected but legitimate answers, reported (e.g. 409 while a crashed holder's lease runs).
    pub anomalies: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counts {
    pub publishes_sent: u64,
    pub publishes_acknowledged: u64,
    pub idempotent_retries: u64,
    pub go_fetches_sent: u64,
    pub go_fetches_acknowledged: u64,
    pub stagings_sent: u64,
    pub stagings_acknowledged: u64,
}

/// Everything a client task needs.
#[derive(Clone)]
pub struct Ctx {
    pub http: reqwest::Client,
    pub base: String,
    pub ledger: Arc<Mutex<Ledger>>,
    pub sizes: Sizes,
    pub go: Arc<GoModules>,
    pub cycle: u64,
    /// A `503` (retryable: the engines are unavailable) is an answer, not a violation: the engines are real
    /// services (PostgreSQL, an S3 server) that may fail a request now and then, and saying
    /// so is what intact promises. Never set for the embedded engines, which have no such
    /// outage of their own.
    pub networked_engines: bool,
}

/// A request that got no answer: the server died (or is dying).
struct Gone;

impl Ctx {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn violation(&self, what: String) {
        eprintln!("VIOLATION (cycle {}): {what}", self.cycle);
        self.ledger().violations.push(format!("cycle {}: {what}", self.cycle));
    }

    /// Classifies a failed answer. Every request here is well-formed and every upstream has
    /// what is asked, so only two failures can be legitimate, and are counted as anomalies:
    /// 409 (a lease ran out on an overloaded machine, a crashed holder's lease still runs)
    /// and 504 (a bounded wait ran out). Anything else is a violation.
    fn unexpected(&self, what: &str, status: reqwest::StatusCode, body: &str) {
        // (The API says `"retryable": true`, the Go proxy "try again shortly" in plain text.)
        let retryable_outage = self.networked_engines && status == reqwest::StatusCode::SERVICE_UNAVAILABLE;
        if status != reqwest::StatusCode::CONFLICT
            && status != reqwest::StatusCode::GATEWAY_TIMEOUT
            && !retryable_outage
        {
            self.violation(format!("{what}: {status} {body}"));
        } else {
            let code = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            *self
                .ledger()
                .anomalies
                .entry(format!("{what}: {} {code}", status.as_u16()))
                .or_default() += 1;
        }
    }

    /// Sends a request; `Err(Gone)` when no complete answer came back.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Vec<u8>), Gone> {
        let resp = req.send().await.map_err(|_| Gone)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|_| Gone)?;
        Ok((status, body.to_vec()))
    }

    async fn json(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Option<Value>, Gone> {
        let (status, body) = self.send(req).await?;
        if !status.is_success() {
            self.unexpected(what, status, &String::from_utf8_lossy(&body));
            return Ok(None);
        }
        match serde_json::from_slice(&body) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                self.violation(format!("{what}: {status} with a body that is not JSON ({e})"));
                Ok(None)
            }
        }
    }
}

/// A `multipart/form-data` body (reqwest's multipart feature is not needed for this alone).
fn multipart(fields: &[(&str, String)], files: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "intact-torture-7f3a9c52e1b04d8a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    for (path, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{path}\"; filename=\"part.bin\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// Publishes one version through a transaction; returns the version it landed on, if
/// acknowledged. `key`: an idempotent `auto` publish.
async fn publish_txn(ctx: &Ctx, name: &str, version: &str, key: Option<&str>) -> Result<Option<String>, Gone> {
    let files = content::api_files(name, key.unwrap_or(version), ctx.sizes);
    let mut begin = json!({"name": name, "version": version, "lease_seconds": 2});
    if let Some(key) = key {
        begin = json!({"name": name, "version": "auto", "lease_seconds": 2, "wait_seconds": 5,
                       "idempotency_key": key, "metadata": {"job": key}});
    }
    let req = ctx
        .http
        .post(format!("{}/api/v1/repos/files/transactions", ctx.base))
        .json(&begin);
    let Some(txn) = ctx.json(req, "begin").await? else {
        return Ok(None);
    };
    if let Some(m) = txn.get("manifest") {
        return Ok(m["version"].as_str().map(str::to_owned));
    }
    let id = txn["id"].as_str().unwrap_or_default().to_owned();
    for (path, bytes) in &files {
        let req = ctx
            .http
            .put(format!("{}/api/v1/transactions/{id}/files/{path}", ctx.base))
            .header("x-checksum-sha256", sha256_hex(bytes))
            .body(bytes.clone());
        let (status, body) = ctx.send(req).await?;
        if !status.is_success() {
            ctx.unexpected("put file", status, &String::from_utf8_lossy(&body));
            return Ok(None);
        }
    }
    let req = ctx.http.post(format!("{}/api/v1/transactions/{id}/commit", ctx.base));
    let Some(m) = ctx.json(req, "commit").await? else {
        return Ok(None);
    };
    Ok(m["version"].as_str().map(str::to_owned))
}

/// The same through one multipart request.
async fn publish_multipart(ctx: &Ctx, name: &str, version: &str, key: Option<&str>) -> Result<Option<String>, Gone> {
    let files = content::api_files(name, key.unwrap_or(version), ctx.sizes);
    let mut fields = vec![("name", name.to_owned()), ("lease_seconds", "2".to_owned())];
    match key {
        Some(key) => {
            fields.push(("version", "auto".to_owned()));
            fields.push(("idempotency_key", key.to_owned()));
            fields.push(("metadata", json!({"job": key}).to_string()));
        }
        None => fields.push(("version", version.to_owned())),
    }
    let (content_type, body) = multipart(&fields, &files);
    let req = ctx
        .http
        .post(format!("{}/api/v1/repos/files/publish", ctx.base))
        .header("content-type", content_type)
        .body(body);
    let Some(m) = ctx.json(req, "multipart publish").await? else {
        return Ok(None);
    };
    Ok(m["version"].as_str().map(str::to_owned))
}

/// A publisher: idempotent jobs left over from earlier cycles first, then new versions until
/// the server dies. Even tasks use transactions, odd ones multipart; tasks 0 and 1 publish
/// explicit versions without keys, tasks 2 and 3 `auto` versions with idempotency keys.
pub async fn publisher(ctx: Ctx, task: usize) {
    let multipart = task % 2 == 1;
    let keyed = task >= 2;
    if retry_jobs(&ctx, task).await.is_err() {
        return;
    }
    let prefix = match (multipart, keyed) {
        (false, false) => "a",
        (true, false) => "m",
        (false, true) => "ak",
        (true, true) => "mk",
    };
    let name = format!("t/{prefix}{task}");
    for k in 0.. {
        if keyed {
            let job = Job {
                multipart,
                task,
                name: name.clone(),
                key: format!("{prefix}{task}-c{}-{k}", ctx.cycle),
            };
            ctx.ledger().jobs_pending.insert(job.clone());
            if run_job(&ctx, &job).await.is_err() {
                return;
            }
        } else {
            let version = format!("c{}-{k}", ctx.cycle);
            ctx.ledger().counts.publishes_sent += 1;
            let landed = if multipart {
                publish_multipart(&ctx, &name, &version, None).await
            } else {
                publish_txn(&ctx, &name, &version, None).await
            };
            match landed {
                Err(Gone) => return,
                Ok(Some(v)) if v == version => {
                    let mut l = ctx.ledger();
                    l.counts.publishes_acknowledged += 1;
                    l.acked.insert(("files".into(), name.clone(), version));
                }
                Ok(Some(v)) => ctx.violation(format!("{name}@{version} acknowledged as version {v}")),
                Ok(None) => {}
            }
        }
    }
}

/// Retries task `task`'s idempotent jobs that a kill left unanswered.
async fn retry_jobs(ctx: &Ctx, task: usize) -> Result<(), Gone> {
    let retry: Vec<Job> = ctx
        .ledger()
        .jobs_pending
        .iter()
        .filter(|j| j.task == task)
        .cloned()
        .collect();
    for job in retry {
        ctx.ledger().counts.idempotent_retries += 1;
        run_job(ctx, &job).await?;
    }
    Ok(())
}

/// The final round: only the retries, on a server left alive, each until it is answered
/// with its version. A retryable 409 is tried again a second later, as a render farm would:
/// on a shared catalog a killed server's uploads into the job's transaction hold its commit
/// (`uploads_in_progress`) until their short lease lapses, since another replica cannot tell
/// a dead upload from a live one elsewhere.
pub async fn drain_jobs(ctx: &Ctx, task: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let _ = retry_jobs(ctx, task).await;
        let left = ctx.ledger().jobs_pending.iter().any(|j| j.task == task);
        if !left || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn run_job(ctx: &Ctx, job: &Job) -> Result<(), Gone> {
    ctx.ledger().counts.publishes_sent += 1;
    let landed = if job.multipart {
        publish_multipart(ctx, &job.name, "auto", Some(&job.key)).await?
    } else {
        publish_txn(ctx, &job.name, "auto", Some(&job.key)).await?
    };
    if let Some(version) = landed {
        let mut l = ctx.ledger();
        l.counts.publishes_acknowledged += 1;
        l.jobs_pending.remove(job);
        if let Some(before) = l.jobs_done.insert(job.key.clone(), version.clone())
            && before != version
        {
            drop(l);
            ctx.violation(format!(
                "job {} acknowledged as {}@{before}, then as @{version}",
                job.key, job.name
            ));
            return Ok(());
        }
        l.acked.insert(("files".into(), job.name.clone(), version));
    }
    Ok(())
}

/// Fetches one module version like the go command does: `.info`, `.mod`, and (unless the
/// build only needs the module graph) `.zip`. Every answer must be the upstream's bytes.
async fn go_fetch(ctx: &Ctx, module: &str, version: &str, zip: bool) -> Result<bool, Gone> {
    let upstream = ctx.go.get(module, version);
    let mut files: Vec<(&str, &[u8])> = vec![("info", &upstream.info), ("mod", &upstream.go_mod)];
    if zip {
        files.push(("zip", &upstream.zip));
    }
    for (ext, want) in files {
        let url = format!("{}/go/goproxy/{module}/@v/{version}.{ext}", ctx.base);
        let (status, body) = ctx.send(ctx.http.get(url)).await?;
        if !status.is_success() {
            ctx.unexpected(&format!("go .{ext}"), status, &String::from_utf8_lossy(&body));
            return Ok(false);
        }
        if body != want {
            ctx.violation(format!(
                "{module}@{version}.{ext}: served {} bytes that differ from the upstream's {}",
                body.len(),
                want.len()
            ));
            return Ok(false);
        }
    }
    Ok(true)
}

/// A Go client: fetches left unanswered by a kill first, then new module versions.
pub async fn go_client(ctx: Ctx, task: usize) {
    let retry: Vec<_> = ctx
        .ledger()
        .go_pending
        .iter()
        .filter(|p| p.0 == task)
        .cloned()
        .collect();
    let module = format!("example.com/torture/g{task}");
    let fresh = (0..).map(|k| {
        let version = format!("v1.0.{}", ctx.cycle * 1000 + k);
        let zip = !crate::harness::seed_of(&version).is_multiple_of(3);
        (task, module.clone(), version, zip)
    });
    let _ = go_fetches(&ctx, retry.into_iter().chain(fresh)).await;
}

/// The final round: only the fetches a kill left unanswered.
pub async fn drain_go(ctx: &Ctx, task: usize) {
    let retry: Vec<_> = ctx
        .ledger()
        .go_pending
        .iter()
        .filter(|p| p.0 == task)
        .cloned()
        .collect();
    let _ = go_fetches(ctx, retry.into_iter()).await;
}

async fn go_fetches(ctx: &Ctx, fetches: impl Iterator<Item = (usize, String, String, bool)>) -> Result<(), Gone> {
    for fetch in fetches {
        let (_, module, version, zip) = &fetch;
        {
            let mut l = ctx.ledger();
            l.counts.go_fetches_sent += 1;
            l.go_pending.insert(fetch.clone());
        }
        let ok = go_fetch(ctx, module, version, *zip).await?;
        let mut l = ctx.ledger();
        l.go_pending.remove(&fetch);
        if ok {
            l.counts.go_fetches_acknowledged += 1;
            let full = l.go_acked.entry((module.clone(), version.clone())).or_default();
            *full |= *zip;
        }
    }
    Ok(())
}

/// Stages this cycle's builds, all at once, while the requests a kill left unanswered are
/// retried one after the other beside them: a retry stuck behind a crashed run's lock holds
/// up neither the new builds nor more than one waiter.
pub async fn stager(ctx: Ctx, builds: Vec<String>) {
    let retry: Vec<_> = ctx.ledger().stage_pending.iter().cloned().collect();
    let mut fresh: Vec<Vec<(String, String)>> = Vec::new();
    for (j, build) in builds.into_iter().enumerate() {
        if j % 2 == 0 {
            fresh.push(vec![(build.clone(), "payload".into()), (build, "suite".into())]);
        } else {
            fresh.push(vec![(build.clone(), "suite".into())]);
            fresh.push(vec![(build, "payload".into())]);
        }
    }
    let retries = async {
        for item in retry {
            if !stage(&ctx, vec![item]).await {
                return;
            }
        }
    };
    futures::future::join(
        retries,
        futures::future::join_all(fresh.into_iter().map(|items| stage(&ctx, items))),
    )
    .await;
}

/// One staging request; what it asked for stays pending if the server died before answering
/// (then `false`).
async fn stage(ctx: &Ctx, items: Vec<(String, String)>) -> bool {
    let name = items[0].0.clone();
    let artifacts: Vec<&str> = items.iter().map(|(_, a)| a.as_str()).collect();
    {
        let mut l = ctx.ledger();
        l.counts.stagings_sent += 1;
        l.stage_pending.extend(items.iter().cloned());
    }
    let req = ctx
        .http
        .post(format!("{}/api/v1/repos/builds/stage", ctx.base))
        .json(&json!({"name": name, "artifacts": artifacts}));
    let Ok(answer) = ctx.json(req, "stage").await else {
        return false;
    };
    let mut l = ctx.ledger();
    for item in &items {
        l.stage_pending.remove(item);
    }
    if let Some(v) = answer {
        let all_staged = v["items"]
            .as_array()
            .is_some_and(|a| a.len() == items.len() && a.iter().all(|i| i["state"] == "staged"));
        if all_staged {
            l.counts.stagings_acknowledged += 1;
            l.staged.extend(items.iter().cloned());
            for (build, artifact) in &items {
                l.acked.insert(("builds".into(), build.clone(), artifact.clone()));
            }
        } else {
            drop(l);
            ctx.violation(format!(
                "stage {name} {artifacts:?}: 200 without every item staged: {v}"
            ));
        }
    }
    true
}
