//! One racing client: its own HTTP connection pool, a seeded choice of operations over the
//! few shared names, and every answer judged against what the operation allows, recorded in
//! the ledger for the final checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use intact_core::{Digest, Manifest};
use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::Value;

use super::content::{Author, FileSpec, Publish};
use super::ledger::{Ack, ConflictSeen, Counts, Key, Ledger, Wire};
use super::{LeaseClock, Plan, Rng};

/// Files a transaction holds as its client knows them: path -> sha256.
pub(super) type Staged = BTreeMap<String, Digest>;

/// How a transaction's files go up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Upload {
    OneByOne,
    /// All PUTs at once into the one transaction.
    Parallel,
    /// One path first gets other bytes, then (a second PUT) its real ones.
    Supersede,
    /// One PUT first carries a wrong `x-checksum-sha256` and must stage nothing.
    WrongChecksum,
    /// The last PUT and the commit go out together.
    RacingCommit,
}

/// What a commit answer meant.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Committed {
    /// 201 or 200, with the manifest.
    Landed(StatusCode, Value),
    Conflict,
    NotOpen(String),
    /// `uploads_in_progress`: commit again once the uploads answered.
    Busy,
    /// Anything else (already recorded as a violation) or no answer.
    Failed,
}

/// A transaction opened.
pub(super) struct Opened {
    pub(super) id: String,
    pub(super) version: String,
}

/// A transaction left open on purpose, which a later round tries to commit.
pub(super) struct Stale {
    pub(super) id: String,
    pub(super) publish: Arc<Publish>,
    pub(super) staged: Staged,
}

pub struct Racer {
    pub id: u32,
    pub(super) wire: Wire,
    /// The servers' lease clock: read to know when a lease has certainly run out.
    pub(super) clock: LeaseClock,
    pub(super) rng: Rng,
    pub(super) plan: Arc<Plan>,
    pub(super) round: usize,
    pub(super) attempts: u32,
    /// This client's acknowledged versions, for same-content re-publishes.
    pub(super) mine: Vec<(Key, Author)>,
    /// Transactions this client opened (for reading their state back).
    pub(super) opened: Vec<String>,
    pub(super) stale: Vec<Stale>,
    /// Create requests sent with an idempotency key (the body carries it).
    pub(super) keyed: Vec<Value>,
}

impl Racer {
    /// Client `id`, its requests taking turns among the servers at `bases`.
    pub fn new(id: u32, bases: &[String], clock: LeaseClock, ledger: Arc<Ledger>, plan: Arc<Plan>) -> Self {
        let seed = ledger.seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            id,
            wire: Wire::across(format!("client {id}"), bases, ledger),
            clock,
            rng: Rng::new(seed),
            plan,
            round: 0,
            attempts: 0,
            mine: Vec::new(),
            opened: Vec::new(),
            stale: Vec::new(),
            keyed: Vec::new(),
        }
    }

    pub(super) fn ledger(&self) -> &Ledger {
        &self.wire.ledger
    }

    pub async fn run(mut self) {
        for round in 0..self.plan.rounds {
            self.round = round;
            match self.rng.below(100) {
                0..=21 => {
                    let (name, version) = self.exact_target();
                    self.publish_txn(&name, &version).await;
                }
                22..=31 => {
                    let name = self.rng.pick(&self.plan.auto_names).clone();
                    self.publish_txn(&name, "auto").await;
                }
                32..=40 => self.multipart_fresh().await,
                41..=47 => self.abort_op().await,
                48..=52 => self.abandon_op().await,
                53..=56 => self.revisit_op().await,
                57..=62 => self.republish_same().await,
                63..=69 => self.republish_different().await,
                70..=71 => self.idempotency_misuse().await,
                _ => self.read_op().await,
            }
        }
    }

    pub(super) fn next_author(&mut self) -> Author {
        self.attempts += 1;
        Author {
            client: self.id,
            attempt: self.attempts,
        }
    }

    /// An exact version of a shared name. Versions come from a window that moves with the
    /// round, so clients keep colliding on versions nobody has committed yet.
    pub(super) fn exact_target(&mut self) -> (String, String) {
        let name = self.rng.pick(&self.plan.exact_names).clone();
        let window = self.round / 6 + self.rng.below(2) as usize;
        (name, format!("{window}.{}", self.rng.below(2)))
    }

    /// A name and version spec for a new transaction: mostly exact, sometimes `auto`.
    pub(super) fn any_target(&mut self) -> (String, String) {
        if self.rng.chance(30) {
            (self.rng.pick(&self.plan.auto_names).clone(), "auto".to_owned())
        } else {
            self.exact_target()
        }
    }

    // --- requests ------------------------------------------------------------------------

    pub(super) async fn create(&self, what: &str, body: &Value, header_key: bool) -> Option<(StatusCode, Value)> {
        let mut req = self.wire.http.post(self.wire.url("/api/v1/repos/files/transactions"));
        let mut body = body.clone();
        if header_key && let Some(key) = body.as_object_mut().and_then(|o| o.remove("idempotency_key")) {
            req = req.header("Idempotency-Key", key.as_str().unwrap_or_default());
        }
        self.wire.json(what, req.json(&body)).await
    }

    pub(super) async fn put(
        &self,
        id: &str,
        path: &str,
        bytes: Vec<u8>,
        checksum: Option<&Digest>,
    ) -> Option<(StatusCode, Value)> {
        Counts::bump(&self.ledger().counts.uploads);
        let mut req = self
            .wire
            .http
            .put(self.wire.url(&format!("/api/v1/transactions/{id}/files/{path}")))
            .body(bytes);
        if let Some(d) = checksum {
            req = req.header("x-checksum-sha256", d.to_hex());
        }
        self.wire.json(&format!("PUT {path} into {id}"), req).await
    }

    pub(super) async fn commit(&self, id: &str) -> Option<(StatusCode, Value)> {
        let req = self
            .wire
            .http
            .post(self.wire.url(&format!("/api/v1/transactions/{id}/commit")));
        self.wire.json(&format!("commit {id}"), req).await
    }

    pub(super) async fn delete(&self, id: &str) -> Option<(StatusCode, Value)> {
        let req = self
            .wire
            .http
            .delete(self.wire.url(&format!("/api/v1/transactions/{id}")));
        self.wire.json(&format!("DELETE {id}"), req).await
    }

    pub(super) async fn get_json(&self, what: &str, path: &str) -> Option<(StatusCode, Value)> {
        Counts::bump(&self.ledger().counts.reads);
        self.wire.json(what, self.wire.http.get(self.wire.url(path))).await
    }

    pub(super) async fn multipart(&self, what: &str, form: Form) -> Option<(StatusCode, Value)> {
        let req = self
            .wire
            .http
            .post(self.wire.url("/api/v1/repos/files/publish"))
            .multipart(form);
        self.wire.json(what, req).await
    }

    // --- judging answers -----------------------------------------------------------------

    /// Opens a transaction for `author`. With `duplicate`, the same keyed request goes out
    /// twice at once: both must name one transaction.
    pub(super) async fn open(
        &mut self,
        name: &str,
        spec: &str,
        body: &Value,
        author: Author,
        duplicate: bool,
    ) -> Option<Opened> {
        let what = format!("open {name}@{spec} for {author}");
        let header_key = self.rng.chance(30);
        let answers = if duplicate {
            let (a, b) = tokio::join!(
                self.create(&what, body, header_key),
                self.create(&what, body, !header_key)
            );
            vec![a?, b?]
        } else {
            vec![self.create(&what, body, header_key).await?]
        };
        let mut created = Vec::new();
        let mut resumed = Vec::new();
        for (status, v) in &answers {
            match *status {
                StatusCode::CREATED => created.push(v),
                StatusCode::OK => resumed.push(v),
                StatusCode::CONFLICT if v["error"] == "locked" => {
                    Counts::bump(&self.ledger().counts.locked);
                    if !v["holder"]["id"].is_string() {
                        self.wire.unexpected(&what, *status, v);
                    }
                }
                _ => self.wire.unexpected(&what, *status, v),
            }
        }
        if created.len() > 1 {
            self.ledger().violation(format!(
                "client {}: {what}: one idempotency key opened two transactions: {answers:?}",
                self.id
            ));
        }
        if !resumed.is_empty() && created.is_empty() {
            self.ledger().violation(format!(
                "client {}: {what}: a new idempotency key resumed a transaction: {answers:?}",
                self.id
            ));
        }
        let txn = (*created.first()?).clone();
        for r in &resumed {
            if r["id"] != txn["id"] || r["version"] != txn["version"] || r["state"] != "open" {
                self.ledger()
                    .violation(format!("client {}: {what}: the retry resumed {r}, not {txn}", self.id));
            }
        }
        let id = txn["id"].as_str()?.to_owned();
        let version = txn["version"].as_str()?.to_owned();
        let version_ok = if spec == "auto" {
            version.parse::<u64>().is_ok_and(|n| n > 0 && n.to_string() == version)
        } else {
            version == spec
        };
        if !version_ok || txn["state"] != "open" || txn["name"] != name || txn["metadata"] != body["metadata"] {
            self.ledger()
                .violation(format!("client {}: {what}: opened something else: {txn}", self.id));
        }
        self.ledger().touch(name, &version);
        let key = (name.to_owned(), version.clone());
        self.ledger().txn(&id, |t| {
            t.client = self.id;
            t.author = Some(author);
            t.key = key;
        });
        self.opened.push(id.clone());
        if body.get("idempotency_key").is_some() {
            self.keyed.push(body.clone());
        }
        Some(Opened { id, version })
    }

    /// Judges a PUT answer: `Some(true)` staged, `Some(false)` the transaction is no longer
    /// open (in one of the `allowed` states), `None` anything else.
    pub(super) fn judge_put(
        &self,
        id: &str,
        path: &str,
        spec_sha: &Digest,
        size: u64,
        answer: Option<(StatusCode, Value)>,
        allowed: &[&str],
    ) -> Option<bool> {
        let (status, v) = answer?;
        let what = format!("PUT {path} into {id}");
        match status {
            StatusCode::CREATED => {
                if v["path"] != path || v["size"] != size || v["sha256"] != spec_sha.to_hex().as_str() {
                    self.ledger().violation(format!(
                        "client {}: {what}: staged {v}, sent {size} bytes {spec_sha}",
                        self.id
                    ));
                }
                Some(true)
            }
            StatusCode::CONFLICT if v["error"] == "not_open" => {
                let state = v["state"].as_str().unwrap_or_default().to_owned();
                if !allowed.contains(&state.as_str()) {
                    self.wire.unexpected(&what, status, &v);
                    return None;
                }
                self.note_not_open(id, &state);
                Some(false)
            }
            _ => {
                self.wire.unexpected(&what, status, &v);
                None
            }
        }
    }

    pub(super) fn note_not_open(&self, id: &str, state: &str) {
        if state == "expired" || state == "aborted" {
            if state == "expired" {
                Counts::bump(&self.ledger().counts.expired_seen);
            }
            self.ledger().txn(id, |t| t.not_open = Some(state.to_owned()));
        }
    }

    /// PUTs `files` into `id`; `false` once the transaction is no longer open.
    pub(super) async fn put_all(
        &mut self,
        id: &str,
        publish: &Publish,
        files: &[(String, FileSpec)],
        mode: Upload,
        staged: &mut Staged,
    ) -> bool {
        let allowed = ["expired"];
        if mode == Upload::Parallel {
            let this = &*self;
            let puts = files.iter().map(|(path, spec)| {
                let checksum = this.rng_free_checksum(spec);
                async move {
                    let answer = this.put(id, path, spec.recipe.bytes(), checksum.as_ref()).await;
                    (path, spec, answer)
                }
            });
            let mut open = true;
            for (path, spec, answer) in futures::future::join_all(puts).await {
                match self.judge_put(id, path, &spec.sha256, spec.size, answer, &allowed) {
                    Some(true) => {
                        staged.insert(path.clone(), spec.sha256);
                    }
                    _ => open = false,
                }
            }
            return open;
        }
        for (i, (path, spec)) in files.iter().enumerate() {
            if mode == Upload::Supersede
                && let Some(old) = publish.superseded.get(path)
            {
                let answer = self.put(id, path, old.recipe.bytes(), None).await;
                if self.judge_put(id, path, &old.sha256, old.size, answer, &allowed) != Some(true) {
                    return false;
                }
            }
            if i == 0 && mode == Upload::WrongChecksum {
                let wrong = Digest::of(b"not these bytes");
                let what = format!("PUT {path} into {id} with a wrong checksum");
                match self.put(id, path, spec.recipe.bytes(), Some(&wrong)).await {
                    Some((StatusCode::BAD_REQUEST, v)) if v["error"] == "checksum_mismatch" => {}
                    Some((StatusCode::CONFLICT, v)) if v["error"] == "not_open" && v["state"] == "expired" => {
                        self.note_not_open(id, "expired");
                        return false;
                    }
                    Some((status, v)) => self.wire.unexpected(&what, status, &v),
                    None => return false,
                }
            }
            let checksum = self.rng_free_checksum(spec);
            let answer = self.put(id, path, spec.recipe.bytes(), checksum.as_ref()).await;
            match self.judge_put(id, path, &spec.sha256, spec.size, answer, &allowed) {
                Some(true) => {
                    staged.insert(path.clone(), spec.sha256);
                }
                _ => return false,
            }
        }
        true
    }

    /// A right `x-checksum-sha256` on about a third of the uploads (decided by the file, so
    /// parallel uploads need no shared generator).
    pub(super) fn rng_free_checksum(&self, spec: &FileSpec) -> Option<Digest> {
        spec.sha256.as_bytes()[0].is_multiple_of(3).then_some(spec.sha256)
    }

    /// Judges a commit answer for `publish`, whose client had staged `staged` in `id`.
    pub(super) fn judge_commit(
        &mut self,
        op: &'static str,
        id: &str,
        publish: &Publish,
        staged: &Staged,
        answer: Option<(StatusCode, Value)>,
    ) -> Committed {
        self.judge_commit_racing(op, id, publish, staged, None, answer)
    }

    /// `judge_commit` for a commit that raced the PUT of `racing`.
    pub(super) fn judge_commit_racing(
        &mut self,
        op: &'static str,
        id: &str,
        publish: &Publish,
        staged: &Staged,
        racing: Option<&str>,
        answer: Option<(StatusCode, Value)>,
    ) -> Committed {
        let Some((status, v)) = answer else {
            return Committed::Failed;
        };
        let what = format!("{op}: commit {id} for {}", publish.author);
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let Some(m) = self.ledger().observe(&format!("client {} {what}", self.id), &v) else {
                    return Committed::Failed;
                };
                let paths: Vec<String> = staged.keys().cloned().collect();
                if let Err(e) = publish.check(&m, Some(&paths)) {
                    self.ledger()
                        .violation(format!("client {}: {what}: answered {status} with {v}: {e}", self.id));
                }
                let created = status == StatusCode::CREATED;
                if created && m.transaction.as_ref().map(|t| t.as_str()) != Some(id) {
                    self.ledger().violation(format!(
                        "client {}: {what}: 201 names another transaction: {v}",
                        self.id
                    ));
                }
                self.ledger().txn(id, |t| {
                    if created {
                        t.created += 1;
                    } else {
                        t.identical += 1;
                    }
                });
                self.acknowledge(op, status, publish.author, Some(id), &v, Some(paths), &m);
                Committed::Landed(status, v)
            }
            StatusCode::CONFLICT => match v["error"].as_str() {
                Some("conflict") => {
                    self.note_conflict(&publish.name, publish, staged, racing, &v);
                    Committed::Conflict
                }
                Some("not_open") => {
                    let state = v["state"].as_str().unwrap_or_default().to_owned();
                    if state != "expired" && state != "aborted" {
                        self.wire.unexpected(&what, status, &v);
                    }
                    self.note_not_open(id, &state);
                    Committed::NotOpen(state)
                }
                Some("uploads_in_progress") if v["retryable"] == true => Committed::Busy,
                _ => {
                    self.wire.unexpected(&what, status, &v);
                    Committed::Failed
                }
            },
            _ => {
                // A 400 naming `files` here means the commit judged a staged file missing
                // although its transaction was open and its upload had answered.
                self.wire.unexpected(&what, status, &v);
                Committed::Failed
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn acknowledge(
        &mut self,
        op: &'static str,
        status: StatusCode,
        author: Author,
        txn: Option<&str>,
        manifest: &Value,
        paths: Option<Vec<String>>,
        m: &Manifest,
    ) {
        if status == StatusCode::CREATED {
            Counts::bump(&self.ledger().counts.commits);
            self.mine.push(((m.name.to_string(), m.version.to_string()), author));
        } else {
            Counts::bump(&self.ledger().counts.identical);
        }
        self.ledger().ack(Ack {
            client: self.id,
            op,
            status: status.as_u16(),
            author,
            txn: txn.map(str::to_owned),
            manifest: manifest.clone(),
            paths,
        });
    }

    pub(super) fn note_conflict(
        &self,
        name: &str,
        publish: &Publish,
        staged: &Staged,
        racing: Option<&str>,
        v: &Value,
    ) {
        if !v["differences"].is_object() {
            self.ledger().violation(format!(
                "client {}: a conflict without differences for {}: {v}",
                self.id, publish.author
            ));
        }
        let Some(version) = publish.version.clone() else {
            self.ledger().violation(format!(
                "client {}: an `auto` publish of {} conflicted: {v}",
                self.id, publish.author
            ));
            return;
        };
        self.ledger().conflict(ConflictSeen {
            client: self.id,
            key: (name.to_owned(), version),
            author: publish.author,
            files: staged.iter().map(|(p, d)| (p.clone(), d.to_hex())).collect(),
            racing: racing.map(str::to_owned),
            differences: v["differences"].clone(),
        });
    }

    pub(super) async fn commit_once(
        &mut self,
        op: &'static str,
        id: &str,
        publish: &Publish,
        staged: &Staged,
    ) -> Committed {
        let answer = self.commit(id).await;
        self.judge_commit(op, id, publish, staged, answer)
    }
}
