//! One racing client: its own HTTP connection pool, a seeded choice of operations over the
//! few shared names, and every answer judged against what the operation allows, recorded in
//! the ledger for the final checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use intact_core::{Digest, Manifest, Timestamp};
use intact_store::{Clock, ManualClock};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use super::content::{Author, FileSpec, Publish};
use super::ledger::{Ack, ConflictSeen, Counts, Key, Ledger, Wire};
use super::{LONG_LEASE, Plan, Rng};

/// Files a transaction holds as its client knows them: path -> sha256.
type Staged = BTreeMap<String, Digest>;

/// How a transaction's files go up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upload {
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
enum Committed {
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
struct Opened {
    id: String,
    version: String,
}

/// A transaction left open on purpose, which a later round tries to commit.
struct Stale {
    id: String,
    publish: Arc<Publish>,
    staged: Staged,
}

pub struct Racer {
    pub id: u32,
    wire: Wire,
    /// The server's lease clock: read to know when a lease has certainly run out.
    clock: ManualClock,
    rng: Rng,
    plan: Arc<Plan>,
    round: usize,
    attempts: u32,
    /// This client's acknowledged versions, for same-content re-publishes.
    mine: Vec<(Key, Author)>,
    /// Transactions this client opened (for reading their state back).
    opened: Vec<String>,
    stale: Vec<Stale>,
    /// Create requests sent with an idempotency key (the body carries it).
    keyed: Vec<Value>,
}

impl Racer {
    pub fn new(id: u32, base: &str, clock: ManualClock, ledger: Arc<Ledger>, plan: Arc<Plan>) -> Self {
        let seed = ledger.seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            id,
            wire: Wire::new(format!("client {id}"), base, ledger),
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

    fn ledger(&self) -> &Ledger {
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

    fn next_author(&mut self) -> Author {
        self.attempts += 1;
        Author {
            client: self.id,
            attempt: self.attempts,
        }
    }

    /// An exact version of a shared name. Versions come from a window that moves with the
    /// round, so clients keep colliding on versions nobody has committed yet.
    fn exact_target(&mut self) -> (String, String) {
        let name = self.rng.pick(&self.plan.exact_names).clone();
        let window = self.round / 6 + self.rng.below(2) as usize;
        (name, format!("{window}.{}", self.rng.below(2)))
    }

    /// A name and version spec for a new transaction: mostly exact, sometimes `auto`.
    fn any_target(&mut self) -> (String, String) {
        if self.rng.chance(30) {
            (self.rng.pick(&self.plan.auto_names).clone(), "auto".to_owned())
        } else {
            self.exact_target()
        }
    }

    // --- requests ------------------------------------------------------------------------

    async fn create(&self, what: &str, body: &Value, header_key: bool) -> Option<(StatusCode, Value)> {
        let mut req = self.wire.http.post(self.wire.url("/api/v1/repos/files/transactions"));
        let mut body = body.clone();
        if header_key && let Some(key) = body.as_object_mut().and_then(|o| o.remove("idempotency_key")) {
            req = req.header("Idempotency-Key", key.as_str().unwrap_or_default());
        }
        self.wire.json(what, req.json(&body)).await
    }

    async fn put(
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

    async fn commit(&self, id: &str) -> Option<(StatusCode, Value)> {
        let req = self
            .wire
            .http
            .post(self.wire.url(&format!("/api/v1/transactions/{id}/commit")));
        self.wire.json(&format!("commit {id}"), req).await
    }

    async fn delete(&self, id: &str) -> Option<(StatusCode, Value)> {
        let req = self
            .wire
            .http
            .delete(self.wire.url(&format!("/api/v1/transactions/{id}")));
        self.wire.json(&format!("DELETE {id}"), req).await
    }

    async fn get_json(&self, what: &str, path: &str) -> Option<(StatusCode, Value)> {
        Counts::bump(&self.ledger().counts.reads);
        self.wire.json(what, self.wire.http.get(self.wire.url(path))).await
    }

    async fn multipart(&self, what: &str, form: Form) -> Option<(StatusCode, Value)> {
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
    async fn open(&mut self, name: &str, spec: &str, body: &Value, author: Author, duplicate: bool) -> Option<Opened> {
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
    fn judge_put(
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

    fn note_not_open(&self, id: &str, state: &str) {
        if state == "expired" || state == "aborted" {
            if state == "expired" {
                Counts::bump(&self.ledger().counts.expired_seen);
            }
            self.ledger().txn(id, |t| t.not_open = Some(state.to_owned()));
        }
    }

    /// PUTs `files` into `id`; `false` once the transaction is no longer open.
    async fn put_all(
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
    fn rng_free_checksum(&self, spec: &FileSpec) -> Option<Digest> {
        spec.sha256.as_bytes()[0].is_multiple_of(3).then_some(spec.sha256)
    }

    /// Judges a commit answer for `publish`, whose client had staged `staged` in `id`.
    fn judge_commit(
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
    fn judge_commit_racing(
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
    fn acknowledge(
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

    fn note_conflict(&self, name: &str, publish: &Publish, staged: &Staged, racing: Option<&str>, v: &Value) {
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

    async fn commit_once(&mut self, op: &'static str, id: &str, publish: &Publish, staged: &Staged) -> Committed {
        let answer = self.commit(id).await;
        self.judge_commit(op, id, publish, staged, answer)
    }

    // --- operations ----------------------------------------------------------------------

    fn create_body(&mut self, name: &str, spec: &str, publish_meta: &Value, lease: u64, key: Option<String>) -> Value {
        let mut body = json!({"name": name, "version": spec, "metadata": publish_meta, "lease_seconds": lease});
        if self.rng.chance(30) {
            body["wait_seconds"] = json!(1 + self.rng.below(2));
        }
        if let Some(key) = key {
            body["idempotency_key"] = json!(key);
        }
        body
    }

    fn upload_mode(&mut self) -> Upload {
        match self.rng.below(10) {
            0..=3 => Upload::OneByOne,
            4..=5 => Upload::Parallel,
            6 => Upload::Supersede,
            7 => Upload::WrongChecksum,
            _ => Upload::RacingCommit,
        }
    }

    /// The transaction protocol end to end: open (with or without a key, a wait, a short
    /// lease), upload in one of several ways, commit once, twice or twice at once, then poke
    /// the result (a repeated commit, an idempotent retry, a rollback of a committed one).
    async fn publish_txn(&mut self, name: &str, spec: &str) {
        let author = self.next_author();
        let short = self.rng.chance(12);
        let lease = if short { 6 + self.rng.below(30) } else { LONG_LEASE };
        let keyed = self.rng.chance(40);
        let meta = Publish::metadata_for(author, spec);
        let body = self.create_body(name, spec, &meta, lease, keyed.then(|| author.key()));
        let duplicate = keyed && !short && self.rng.chance(30);
        let Some(opened) = self.open(name, spec, &body, author, duplicate).await else {
            return;
        };
        let mode = self.upload_mode();
        let mut publish = Publish::fresh(&mut self.rng, author, name, spec, Some(&opened.version));
        if mode == Upload::Supersede
            && let Some(path) = publish.files.keys().next().cloned()
        {
            publish.supersede(&mut self.rng, &path);
        }
        let publish = self.ledger().register(publish);
        let mut files: Vec<(String, FileSpec)> = publish.files.iter().map(|(p, f)| (p.clone(), f.clone())).collect();
        let last = if mode == Upload::RacingCommit {
            files.pop()
        } else {
            None
        };
        let mut staged = Staged::new();
        if !self.put_all(&opened.id, &publish, &files, mode, &mut staged).await {
            return;
        }
        let id = opened.id.as_str();
        let mut outcome = match last {
            Some((path, spec)) => {
                let (put, commit) = tokio::join!(self.put(id, &path, spec.recipe.bytes(), None), self.commit(id));
                if self.judge_put(id, &path, &spec.sha256, spec.size, put, &["expired", "committed"]) == Some(true) {
                    staged.insert(path.clone(), spec.sha256);
                }
                self.judge_commit_racing("commit racing a PUT", id, &publish, &staged, Some(&path), commit)
            }
            None => match self.rng.below(10) {
                0..=6 => self.commit_once("commit", id, &publish, &staged).await,
                7..=8 => {
                    let first = self.commit_once("commit", id, &publish, &staged).await;
                    let again = self.commit_once("repeated commit", id, &publish, &staged).await;
                    self.same_landing(id, &first, &again);
                    first
                }
                _ => {
                    let (a, b) = tokio::join!(self.commit(id), self.commit(id));
                    let a = self.judge_commit("concurrent commit", id, &publish, &staged, a);
                    let b = self.judge_commit("concurrent commit", id, &publish, &staged, b);
                    self.same_landing(id, &a, &b);
                    if matches!(a, Committed::Landed(..)) { a } else { b }
                }
            },
        };
        if outcome == Committed::Busy {
            // The racing PUT has answered by now: commit again.
            outcome = self
                .commit_once("commit after uploads_in_progress", id, &publish, &staged)
                .await;
        }
        match outcome {
            Committed::Landed(_, manifest) => self.poke_committed(id, &body, &publish, &staged, &manifest).await,
            Committed::Conflict => self.after_conflict(id, &publish, staged).await,
            Committed::NotOpen(_) | Committed::Failed | Committed::Busy => {}
        }
    }

    /// Two commits of one transaction: at most one made it visible, and both name the same
    /// manifest when both landed.
    fn same_landing(&self, id: &str, a: &Committed, b: &Committed) {
        match (a, b) {
            (Committed::Landed(sa, ma), Committed::Landed(sb, mb))
                if *sa == StatusCode::CREATED && *sb == StatusCode::CREATED || ma != mb =>
            {
                self.ledger().violation(format!(
                    "client {}: two commits of {id} answered {sa} {ma} and {sb} {mb}",
                    self.id
                ));
            }
            (Committed::Landed(..), Committed::Conflict) | (Committed::Conflict, Committed::Landed(..)) => {
                self.ledger().violation(format!(
                    "client {}: commits of {id} answered both landed and conflict: {a:?} {b:?}",
                    self.id
                ));
            }
            _ => {}
        }
    }

    /// Pokes a committed transaction: a repeated commit, an idempotent retry of its open,
    /// a rollback (refused) and its state.
    async fn poke_committed(&mut self, id: &str, body: &Value, publish: &Publish, staged: &Staged, manifest: &Value) {
        if self.rng.chance(25) {
            let again = self.commit_once("commit after commit", id, publish, staged).await;
            match &again {
                Committed::Landed(StatusCode::OK, m) if m == manifest => {}
                other => self.ledger().violation(format!(
                    "client {}: committing {id} again answered {other:?}, not 200 with {manifest}",
                    self.id
                )),
            }
        }
        if body.get("idempotency_key").is_some() && self.rng.chance(40) {
            let what = format!("retry of the open of {id} after its commit");
            if let Some((status, v)) = self.create(&what, body, false).await {
                if status != StatusCode::OK || v["id"] != id || v["state"] != "committed" || v["manifest"] != *manifest
                {
                    self.ledger().violation(format!(
                        "client {}: {what}: answered {status} {v}, not 200 with the committed manifest {manifest}",
                        self.id
                    ));
                } else if let Some(m) = self
                    .ledger()
                    .observe(&format!("client {} {what}", self.id), &v["manifest"])
                {
                    self.acknowledge(
                        "idempotent retry",
                        status,
                        publish.author,
                        Some(id),
                        &v["manifest"],
                        None,
                        &m,
                    );
                }
            }
        }
        if self.rng.chance(10) {
            match self.delete(id).await {
                Some((StatusCode::CONFLICT, v)) if v["error"] == "not_open" && v["state"] == "committed" => {}
                Some((status, v)) => self.wire.unexpected(&format!("DELETE of committed {id}"), status, &v),
                None => {}
            }
        }
    }

    /// After `409 conflict`: mostly roll back, sometimes walk away (its lease runs out).
    async fn after_conflict(&mut self, id: &str, publish: &Arc<Publish>, staged: Staged) {
        if self.rng.chance(80) {
            self.roll_back(id).await;
        } else {
            self.abandon(id, publish, staged, false);
        }
    }

    async fn roll_back(&mut self, id: &str) {
        match self.delete(id).await {
            Some((StatusCode::NO_CONTENT, _)) => {
                Counts::bump(&self.ledger().counts.aborts);
                self.ledger().txn(id, |t| t.rolled_back = true);
            }
            Some((status, v)) => self.wire.unexpected(&format!("DELETE {id}"), status, &v),
            None => {}
        }
    }

    fn abandon(&mut self, id: &str, publish: &Arc<Publish>, staged: Staged, revisit: bool) {
        Counts::bump(&self.ledger().counts.abandoned);
        self.ledger().txn(id, |t| t.abandoned = true);
        if revisit {
            self.stale.push(Stale {
                id: id.to_owned(),
                publish: publish.clone(),
                staged,
            });
        }
    }

    /// Open, upload, roll back; or roll back *while* committing: exactly one of them wins.
    async fn abort_op(&mut self) {
        let author = self.next_author();
        let (name, spec) = self.any_target();
        let meta = Publish::metadata_for(author, &spec);
        let body = self.create_body(&name, &spec, &meta, LONG_LEASE, None);
        let Some(opened) = self.open(&name, &spec, &body, author, false).await else {
            return;
        };
        let publish = Publish::fresh(&mut self.rng, author, &name, &spec, Some(&opened.version));
        let publish = self.ledger().register(publish);
        let files: Vec<(String, FileSpec)> = publish.files.iter().map(|(p, f)| (p.clone(), f.clone())).collect();
        let mode = if self.rng.chance(50) {
            Upload::Parallel
        } else {
            Upload::OneByOne
        };
        let mut staged = Staged::new();
        if !self.put_all(&opened.id, &publish, &files, mode, &mut staged).await {
            return;
        }
        let id = opened.id.as_str();
        if self.rng.chance(60) {
            self.roll_back(id).await;
            // Everything after a rollback is refused, harmlessly.
            let after = self.commit(id).await;
            match after {
                Some((StatusCode::CONFLICT, v)) if v["error"] == "not_open" => {}
                Some((status, v)) => self.wire.unexpected(&format!("commit of rolled back {id}"), status, &v),
                None => {}
            }
            if let Some((path, spec)) = files.first() {
                let put = self.put(id, path, spec.recipe.bytes(), None).await;
                self.judge_put(id, path, &spec.sha256, spec.size, put, &["aborted", "expired"]);
            }
            match self.delete(id).await {
                Some((StatusCode::NO_CONTENT, _)) | None => {}
                Some((status, v)) => self.wire.unexpected(&format!("second DELETE of {id}"), status, &v),
            }
            return;
        }
        let (commit, delete) = tokio::join!(self.commit(id), self.delete(id));
        let committed = self.judge_commit("commit racing a DELETE", id, &publish, &staged, commit);
        match (&committed, delete) {
            (Committed::Landed(..), Some((StatusCode::CONFLICT, v)))
                if v["error"] == "not_open" && v["state"] == "committed" => {}
            (Committed::NotOpen(_) | Committed::Conflict, Some((StatusCode::NO_CONTENT, _))) => {
                Counts::bump(&self.ledger().counts.aborts);
                self.ledger().txn(id, |t| t.rolled_back = true);
            }
            (_, None) => {}
            (c, Some((status, v))) => self.ledger().violation(format!(
                "client {}: commit racing DELETE of {id}: commit {c:?}, DELETE {status} {v}",
                self.id
            )),
        }
    }

    /// Opens with a short lease, uploads, and leaves: the lease runs out on the advancing
    /// clock. Some are tried again later (`revisit_op`).
    async fn abandon_op(&mut self) {
        let author = self.next_author();
        let (name, spec) = self.any_target();
        let meta = Publish::metadata_for(author, &spec);
        let lease = 3 + self.rng.below(20);
        let body = self.create_body(&name, &spec, &meta, lease, None);
        let Some(opened) = self.open(&name, &spec, &body, author, false).await else {
            return;
        };
        let publish = Publish::fresh(&mut self.rng, author, &name, &spec, Some(&opened.version));
        let publish = self.ledger().register(publish);
        let files: Vec<(String, FileSpec)> = publish.files.iter().map(|(p, f)| (p.clone(), f.clone())).collect();
        let mut staged = Staged::new();
        if !self
            .put_all(&opened.id, &publish, &files, Upload::OneByOne, &mut staged)
            .await
        {
            return;
        }
        let revisit = self.rng.chance(50);
        self.abandon(&opened.id, &publish, staged, revisit);
    }

    /// Commits a transaction left open some rounds ago: it lands if its lease still runs,
    /// and is refused (`not_open`, expired) otherwise; never anything in between. When the
    /// lease had certainly run out before the commit was sent (its `expires_at` is not after
    /// the clock read just before), the commit must be refused.
    async fn revisit_op(&mut self) {
        if self.stale.is_empty() {
            return self.read_op().await;
        }
        let i = self.rng.below(self.stale.len() as u64) as usize;
        let stale = self.stale.swap_remove(i);
        let what = format!("GET transaction {} before its late commit", stale.id);
        let expired_before = match self
            .get_json(&what, &format!("/api/v1/transactions/{}", stale.id))
            .await
        {
            Some((StatusCode::OK, v)) => {
                let expires_at = v["expires_at"].as_str().and_then(Timestamp::parse_rfc3339);
                // Half the time the client comes back just after its lease ran out, before
                // the reaper or a gc has had the chance to notice: the commit alone must.
                if let Some(t) = expires_at
                    && v["state"] == "open"
                    && self.rng.chance(50)
                {
                    let behind = t.millis() - self.clock.now().millis();
                    if behind >= 0 {
                        self.clock
                            .advance(std::time::Duration::from_millis(behind.unsigned_abs() + 1));
                        Counts::bump(&self.ledger().counts.clock_advances);
                    }
                }
                let now = self.clock.now();
                v["state"] == "expired" || expires_at.is_some_and(|t| t <= now)
            }
            Some((status, v)) => {
                self.wire.unexpected(&what, status, &v);
                false
            }
            None => false,
        };
        let committed = self
            .commit_once("late commit", &stale.id, &stale.publish, &stale.staged)
            .await;
        if expired_before && committed != Committed::NotOpen("expired".into()) {
            self.ledger().violation(format!(
                "client {}: {} had expired before its late commit, which answered {committed:?}",
                self.id, stale.id
            ));
        }
        if committed == Committed::Conflict {
            self.roll_back(&stale.id).await;
        }
    }

    /// A one-request multipart publish of fresh content (exact or `auto`, sometimes keyed,
    /// sometimes sent again).
    async fn multipart_fresh(&mut self) {
        let author = self.next_author();
        let (name, spec) = self.any_target();
        let version = (spec != "auto").then_some(spec.as_str());
        let publish = Publish::fresh(&mut self.rng, author, &name, &spec, version);
        let publish = self.ledger().register(publish);
        if let Some(v) = version {
            self.ledger().touch(&name, v);
        }
        // Sent again, the same content is the same version (200), keyed or not; but an
        // unkeyed `auto` sent again is a new version, so those go out keyed.
        let resend = self.rng.chance(30);
        let key = (self.rng.chance(40) || (resend && spec == "auto")).then(|| author.key());
        let Some(landed) = self
            .multipart_publish("multipart publish", &publish, &spec, key.as_deref())
            .await
        else {
            return;
        };
        if resend {
            let again = self
                .multipart_publish("multipart publish sent again", &publish, &spec, key.as_deref())
                .await;
            match again {
                Some((StatusCode::OK, m)) if m == landed.1 => {}
                None => {}
                Some((status, m)) => self.ledger().violation(format!(
                    "client {}: multipart publish of {} sent again answered {status} {m}, not 200 with {}",
                    self.id, publish.author, landed.1
                )),
            }
        }
    }

    /// Sends `publish` as one multipart request; `Some` with the manifest when it landed.
    async fn multipart_publish(
        &mut self,
        op: &'static str,
        publish: &Publish,
        spec: &str,
        key: Option<&str>,
    ) -> Option<(StatusCode, Value)> {
        let mut form = Form::new()
            .percent_encode_noop()
            .text("name", publish.name.clone())
            .text("version", spec.to_owned())
            .text("metadata", publish.metadata.to_string());
        if let Some(key) = key {
            form = form.text("idempotency_key", key.to_owned());
        }
        for (path, f) in &publish.files {
            form = form.part(path.clone(), Part::bytes(f.recipe.bytes()).file_name(path.clone()));
        }
        let what = format!("{op} of {}@{spec} for {}", publish.name, publish.author);
        let (status, v) = self.multipart(&what, form).await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let m = self.ledger().observe(&format!("client {} {what}", self.id), &v)?;
                let paths: Vec<String> = publish.files.keys().cloned().collect();
                if let Err(e) = publish.check(&m, Some(&paths)) {
                    self.ledger()
                        .violation(format!("client {}: {what}: answered {status} {v}: {e}", self.id));
                }
                self.acknowledge(op, status, publish.author, None, &v, Some(paths), &m);
                Some((status, v))
            }
            StatusCode::CONFLICT if v["error"] == "locked" => {
                Counts::bump(&self.ledger().counts.locked);
                None
            }
            StatusCode::CONFLICT if v["error"] == "conflict" => {
                let staged: Staged = publish.files.iter().map(|(p, f)| (p.clone(), f.sha256)).collect();
                self.note_conflict(&publish.name, publish, &staged, None, &v);
                None
            }
            StatusCode::CONFLICT if v["error"] == "not_open" && v["state"] == "expired" => {
                Counts::bump(&self.ledger().counts.expired_seen);
                None
            }
            _ => {
                self.wire.unexpected(&what, status, &v);
                None
            }
        }
    }

    /// Publishes one of this client's acknowledged versions again with the same content:
    /// always `200` with the manifest as first committed, never a new commit or a conflict.
    async fn republish_same(&mut self) {
        if self.mine.is_empty() {
            return self.read_op().await;
        }
        let (key, author) = self.mine[self.rng.below(self.mine.len() as u64) as usize].clone();
        let Some(publish) = self.ledger().publish_of(author) else {
            return;
        };
        let Some(expected) = self.ledger().seen_manifest(&key) else {
            self.ledger().violation(format!(
                "client {}: acknowledged {}@{} was never recorded as seen",
                self.id, key.0, key.1
            ));
            return;
        };
        let what = format!("same-content re-publish of {}@{} by {author}", key.0, key.1);
        let landed = if self.rng.chance(40) {
            let mut exact = (*publish).clone();
            exact.version = Some(key.1.clone());
            self.multipart_publish("same-content multipart re-publish", &exact, &key.1, None)
                .await
        } else {
            let mut body = json!({"name": key.0, "version": key.1, "metadata": publish.metadata});
            if self.rng.chance(50) {
                body["wait_seconds"] = json!(2);
            }
            let (status, v) = match self.create(&what, &body, false).await {
                Some(a) => a,
                None => return,
            };
            match status {
                StatusCode::CREATED => {}
                StatusCode::CONFLICT if v["error"] == "locked" => {
                    Counts::bump(&self.ledger().counts.locked);
                    return;
                }
                _ => return self.wire.unexpected(&what, status, &v),
            }
            let Some(id) = v["id"].as_str().map(str::to_owned) else {
                return;
            };
            self.ledger().txn(&id, |t| {
                t.client = self.id;
                t.author = Some(author);
                t.key = key.clone();
            });
            self.opened.push(id.clone());
            let files: Vec<(String, FileSpec)> = publish.files.iter().map(|(p, f)| (p.clone(), f.clone())).collect();
            let mut staged = Staged::new();
            if !self.put_all(&id, &publish, &files, Upload::Parallel, &mut staged).await {
                return;
            }
            match self
                .commit_once("same-content re-publish", &id, &publish, &staged)
                .await
            {
                Committed::Landed(status, m) => Some((status, m)),
                _ => None,
            }
        };
        match landed {
            Some((StatusCode::OK, m)) if m == expected => {}
            Some((status, m)) => self.ledger().violation(format!(
                "client {}: {what}: answered {status} {m}, not 200 with {expected}",
                self.id
            )),
            // Locked (counted), or refused and already recorded as a violation.
            None => {}
        }
    }

    /// Publishes a version some client has seen with other content (new files, or the same
    /// files with other metadata): always `409 conflict` naming the differences.
    async fn republish_different(&mut self) {
        let pick = self.rng.next_u64();
        let Some(((name, version), manifest)) = self.ledger().random_seen(pick) else {
            return self.read_op().await;
        };
        let author = self.next_author();
        let existing = Author::of_metadata(&manifest["metadata"]).and_then(|a| self.ledger().publish_of(a));
        let publish = match existing {
            Some(existing) if self.rng.chance(40) => Publish::same_files(&existing, author, &version),
            _ => Publish::fresh(&mut self.rng, author, &name, &version, Some(&version)),
        };
        let publish = self.ledger().register(publish);
        let what = format!("other-content publish of {name}@{version} by {author}");
        if self.rng.chance(30) {
            if let Some((status, v)) = self
                .multipart_publish("other-content multipart publish", &publish, &version, None)
                .await
            {
                self.ledger().violation(format!(
                    "client {}: {what}: the version was visible, yet the publish answered {status} {v}",
                    self.id
                ));
            }
            return;
        }
        let body = self.create_body(&name, &version, &publish.metadata.clone(), LONG_LEASE, None);
        let Some(opened) = self.open(&name, &version, &body, author, false).await else {
            return;
        };
        let files: Vec<(String, FileSpec)> = publish.files.iter().map(|(p, f)| (p.clone(), f.clone())).collect();
        let mut staged = Staged::new();
        if !self
            .put_all(&opened.id, &publish, &files, Upload::OneByOne, &mut staged)
            .await
        {
            return;
        }
        match self
            .commit_once("other-content publish", &opened.id, &publish, &staged)
            .await
        {
            Committed::Conflict => self.after_conflict(&opened.id, &publish, staged).await,
            Committed::Landed(status, v) => self.ledger().violation(format!(
                "client {}: {what}: the version was visible, yet the commit answered {status} {v}",
                self.id
            )),
            Committed::NotOpen(_) | Committed::Failed | Committed::Busy => {}
        }
    }

    /// Reuses one of this client's idempotency keys for another request: `422`.
    async fn idempotency_misuse(&mut self) {
        if self.keyed.is_empty() {
            return self.read_op().await;
        }
        let mut body = self.keyed[self.rng.below(self.keyed.len() as u64) as usize].clone();
        body["metadata"]["reused"] = json!(true);
        if let Some(o) = body.as_object_mut() {
            o.remove("wait_seconds");
        }
        let what = format!("reuse of key {} for another request", body["idempotency_key"]);
        match self.create(&what, &body, false).await {
            Some((StatusCode::UNPROCESSABLE_ENTITY, v)) if v["error"] == "idempotency_mismatch" => {}
            Some((status, v)) => self.wire.unexpected(&what, status, &v),
            None => {}
        }
    }

    // --- reads ---------------------------------------------------------------------------

    async fn read_op(&mut self) {
        match self.rng.below(10) {
            0..=4 => self.read_version().await,
            5..=6 => self.list_versions().await,
            7 => self.poll_events().await,
            _ => self.read_txn().await,
        }
    }

    /// Reads a version's manifest and one of its files (whole or a range): the bytes are the
    /// publisher's, and hash to what the manifest says.
    async fn read_version(&mut self) {
        let pick = self.rng.next_u64();
        let Some((name, version)) = self.ledger().random_key(pick) else {
            return;
        };
        let was_seen = self.ledger().was_seen(&(name.clone(), version.clone()));
        let what = format!("read {name}@{version}");
        let Some((status, v)) = self
            .get_json(&what, &format!("/api/v1/repos/files/{name}/@v/{version}"))
            .await
        else {
            return;
        };
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND if !was_seen => return,
            StatusCode::NOT_FOUND => {
                return self.ledger().violation(format!(
                    "client {}: {what}: 404 for a version seen before: {v}",
                    self.id
                ));
            }
            _ => return self.wire.unexpected(&what, status, &v),
        }
        let Some(m) = self.ledger().observe(&format!("client {} {what}", self.id), &v) else {
            return;
        };
        if m.files.is_empty() {
            return;
        }
        let file = m.files[self.rng.below(m.files.len() as u64) as usize].clone();
        let Some(publish) = Author::of_metadata(&m.metadata).and_then(|a| self.ledger().publish_of(a)) else {
            return;
        };
        let Some(spec) = publish.files.get(file.path.as_str()) else {
            return;
        };
        let whole = spec.recipe.bytes();
        let size = whole.len() as u64;
        let mut req = self.wire.http.get(
            self.wire
                .url(&format!("/api/v1/repos/files/{name}/@v/{version}/{}", file.path)),
        );
        let range = if size > 0 && self.rng.chance(50) {
            let (header, start, end) = match self.rng.below(3) {
                0 => {
                    // The last position may lie past the end (the range is cut there).
                    let a = self.rng.below(size);
                    let b = a + self.rng.below(size - a + 20);
                    (format!("bytes={a}-{b}"), a, (b + 1).min(size))
                }
                1 => {
                    let a = self.rng.below(size);
                    (format!("bytes={a}-"), a, size)
                }
                _ => {
                    let n = 1 + self.rng.below(size + 10);
                    (format!("bytes=-{n}"), size.saturating_sub(n), size)
                }
            };
            req = req.header("Range", header.clone());
            Some((header, start, end))
        } else {
            None
        };
        Counts::bump(&self.ledger().counts.reads);
        let what = format!("GET {name}@{version}/{} {range:?}", file.path);
        let Some(a) = self.wire.raw(&what, req).await else {
            return;
        };
        let sha = file.sha256.to_hex();
        if a.header("x-checksum-sha256") != Some(sha.as_str()) || a.header("etag") != Some(&format!("\"{sha}\"")) {
            self.ledger().violation(format!(
                "client {}: {what}: checksum headers {:?} / {:?}, manifest says {sha}",
                self.id,
                a.header("x-checksum-sha256"),
                a.header("etag")
            ));
        }
        let (expected_status, expected): (StatusCode, &[u8]) = match &range {
            None => (StatusCode::OK, &whole),
            Some((_, start, end)) => (StatusCode::PARTIAL_CONTENT, &whole[*start as usize..*end as usize]),
        };
        if a.status != expected_status || a.body.as_ref() != expected {
            self.ledger().violation(format!(
                "client {}: {what}: {} with {} bytes (sha256 {}), expected {expected_status} with {} bytes of {} (whole sha256 {sha})",
                self.id,
                a.status,
                a.body.len(),
                Digest::of(&a.body),
                expected.len(),
                publish.author
            ));
        }
        if let Some((_, start, end)) = &range {
            let want = format!("bytes {start}-{}/{size}", end - 1);
            if a.header("content-range") != Some(want.as_str()) {
                self.ledger().violation(format!(
                    "client {}: {what}: Content-Range {:?}, expected {want}",
                    self.id,
                    a.header("content-range")
                ));
            }
        } else if Digest::of(&a.body) != file.sha256 {
            self.ledger().violation(format!(
                "client {}: {what}: the body does not hash to the manifest's sha256",
                self.id
            ));
        }
    }

    /// Lists a name's versions, in small pages: every version seen before is listed, every
    /// listed version can be read, and the order is commit order.
    async fn list_versions(&mut self) {
        let all: Vec<String> = self
            .plan
            .exact_names
            .iter()
            .chain(&self.plan.auto_names)
            .cloned()
            .collect();
        let name = self.rng.pick(&all).clone();
        let before = self.ledger().seen_versions_of(&name);
        let limit = 1 + self.rng.below(6);
        let mut listed: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let q = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
            let what = format!("@versions of {name} after {after:?}");
            let Some((status, v)) = self
                .get_json(&what, &format!("/api/v1/repos/files/{name}/@versions?limit={limit}{q}"))
                .await
            else {
                return;
            };
            if status != StatusCode::OK {
                return self.wire.unexpected(&what, status, &v);
            }
            let page: Vec<String> = v["versions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e["version"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            listed.extend(page);
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
            if listed.len() > 100_000 {
                return self
                    .ledger()
                    .violation(format!("client {}: {what}: paging does not end", self.id));
            }
        }
        let unique: std::collections::BTreeSet<&String> = listed.iter().collect();
        if unique.len() != listed.len() {
            self.ledger().violation(format!(
                "client {}: @versions of {name} lists a version twice: {listed:?}",
                self.id
            ));
        }
        let missing: Vec<&String> = before.iter().filter(|v| !unique.contains(v)).collect();
        if !missing.is_empty() {
            self.ledger().violation(format!(
                "client {}: @versions of {name} leaves out versions seen before: {missing:?} (listed {listed:?})",
                self.id
            ));
        }
        // Listed means readable; order is commit (seq) order.
        let mut last_seq = 0;
        for version in &listed {
            let key = (name.clone(), version.clone());
            let manifest = match self.ledger().seen_manifest(&key) {
                Some(m) => m,
                None => {
                    let what = format!("read of listed {name}@{version}");
                    match self
                        .get_json(&what, &format!("/api/v1/repos/files/{name}/@v/{version}"))
                        .await
                    {
                        Some((StatusCode::OK, v)) => {
                            self.ledger().observe(&format!("client {} {what}", self.id), &v);
                            v
                        }
                        Some((status, v)) => return self.wire.unexpected(&what, status, &v),
                        None => return,
                    }
                }
            };
            let seq = manifest["seq"].as_i64().unwrap_or_default();
            if seq <= last_seq {
                self.ledger().violation(format!(
                    "client {}: @versions of {name} is not in commit order at {version} (seq {seq} after {last_seq}): {listed:?}",
                    self.id
                ));
            }
            last_seq = seq;
        }
    }

    /// One short look at the event log from some point: ascending, after the cursor.
    async fn poll_events(&mut self) {
        let after = self.rng.below(50 * self.plan.clients as u64);
        let what = format!("events after {after}");
        let Some((status, v)) = self
            .get_json(&what, &format!("/api/v1/events?after={after}&limit=20"))
            .await
        else {
            return;
        };
        if status != StatusCode::OK {
            return self.wire.unexpected(&what, status, &v);
        }
        let seqs: Vec<i64> = v["events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["seq"].as_i64()).collect())
            .unwrap_or_default();
        let ascending = seqs.windows(2).all(|w| w[0] < w[1]) && seqs.first().is_none_or(|s| *s > after as i64);
        let next_ok = v["next"].as_i64() == Some(seqs.last().copied().unwrap_or(after as i64));
        if !ascending || !next_ok {
            self.ledger()
                .violation(format!("client {}: {what}: out of order or wrong next: {v}", self.id));
        }
    }

    /// Reads back one of this client's transactions: its state agrees with what the client
    /// was told.
    async fn read_txn(&mut self) {
        if self.opened.is_empty() {
            return;
        }
        let id = self.opened[self.rng.below(self.opened.len() as u64) as usize].clone();
        let Some(log) = self.ledger().txn_log(&id) else { return };
        let what = format!("GET transaction {id}");
        let Some((status, v)) = self.get_json(&what, &format!("/api/v1/transactions/{id}")).await else {
            return;
        };
        if status != StatusCode::OK {
            return self.wire.unexpected(&what, status, &v);
        }
        let state = v["state"].as_str().unwrap_or_default();
        let ok = if log.created + log.identical > 0 {
            state == "committed"
        } else if log.rolled_back || log.not_open.is_some() {
            state == "aborted" || state == "expired"
        } else {
            true
        };
        if !ok {
            self.ledger().violation(format!(
                "client {}: {what}: state {state}, but the client was told {log:?}",
                self.id
            ));
        }
    }
}
