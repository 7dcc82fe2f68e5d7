//! The racing clients' writes: the transaction protocol end to end, rollbacks, abandoned
//! and late-committed transactions, multipart publishes, same- and other-content
//! re-publishes, and a misused idempotency key, each judged against what it allows.

use std::sync::Arc;

use intact_core::Timestamp;
use intact_store::Clock;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use super::LONG_LEASE;
use super::client::{Committed, Racer, Staged, Stale, Upload};
use super::content::{Author, FileSpec, Publish};
use super::ledger::Counts;

impl Racer {
    pub(super) fn create_body(
        &mut self,
        name: &str,
        spec: &str,
        publish_meta: &Value,
        lease: u64,
        key: Option<String>,
    ) -> Value {
        let mut body = json!({"name": name, "version": spec, "metadata": publish_meta, "lease_seconds": lease});
        if self.rng.chance(30) {
            body["wait_seconds"] = json!(1 + self.rng.below(2));
        }
        if let Some(key) = key {
            body["idempotency_key"] = json!(key);
        }
        body
    }

    pub(super) fn upload_mode(&mut self) -> Upload {
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
    pub(super) async fn publish_txn(&mut self, name: &str, spec: &str) {
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
    pub(super) fn same_landing(&self, id: &str, a: &Committed, b: &Committed) {
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
    pub(super) async fn poke_committed(
        &mut self,
        id: &str,
        body: &Value,
        publish: &Publish,
        staged: &Staged,
        manifest: &Value,
    ) {
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
    pub(super) async fn after_conflict(&mut self, id: &str, publish: &Arc<Publish>, staged: Staged) {
        if self.rng.chance(80) {
            self.roll_back(id).await;
        } else {
            self.abandon(id, publish, staged, false);
        }
    }

    pub(super) async fn roll_back(&mut self, id: &str) {
        match self.delete(id).await {
            Some((StatusCode::NO_CONTENT, _)) => {
                Counts::bump(&self.ledger().counts.aborts);
                self.ledger().txn(id, |t| t.rolled_back = true);
            }
            Some((status, v)) => self.wire.unexpected(&format!("DELETE {id}"), status, &v),
            None => {}
        }
    }

    pub(super) fn abandon(&mut self, id: &str, publish: &Arc<Publish>, staged: Staged, revisit: bool) {
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
    pub(super) async fn abort_op(&mut self) {
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
    pub(super) async fn abandon_op(&mut self) {
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
    pub(super) async fn revisit_op(&mut self) {
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
    pub(super) async fn multipart_fresh(&mut self) {
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
        if let Some(key) = &key
            && self.rng.chance(25)
        {
            // The same keyed publish twice at once (a retry sent while the first still runs).
            let op = "keyed multipart publish sent twice at once";
            let (a, b) = tokio::join!(
                self.send_multipart(op, &publish, &spec, Some(key)),
                self.send_multipart(op, &publish, &spec, Some(key))
            );
            let a = self.judge_multipart(op, &publish, &spec, a, true);
            let b = self.judge_multipart(op, &publish, &spec, b, true);
            if let (Some((sa, ma)), Some((sb, mb))) = (&a, &b)
                && (ma != mb || *sa == StatusCode::CREATED && *sb == StatusCode::CREATED)
            {
                self.ledger().violation(format!(
                    "client {}: {op} ({}) answered {sa} {ma} and {sb} {mb}",
                    self.id, publish.author
                ));
            }
            return;
        }
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
    pub(super) async fn multipart_publish(
        &mut self,
        op: &'static str,
        publish: &Publish,
        spec: &str,
        key: Option<&str>,
    ) -> Option<(StatusCode, Value)> {
        let answer = self.send_multipart(op, publish, spec, key).await;
        self.judge_multipart(op, publish, spec, answer, false)
    }

    pub(super) async fn send_multipart(
        &self,
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
        self.multipart(&what, form).await
    }

    /// Judges a multipart publish's answer. `twin`: the same keyed publish went out twice at
    /// once, so both share one transaction and either may find it busy or finished by the
    /// other (the version then lands whole through one of them, or not at all).
    pub(super) fn judge_multipart(
        &mut self,
        op: &'static str,
        publish: &Publish,
        spec: &str,
        answer: Option<(StatusCode, Value)>,
        twin: bool,
    ) -> Option<(StatusCode, Value)> {
        let (status, v) = answer?;
        let what = format!("{op} of {}@{spec} for {}", publish.name, publish.author);
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
            StatusCode::CONFLICT
                if twin
                    && (v["error"] == "uploads_in_progress"
                        || v["error"] == "not_open" && (v["state"] == "aborted" || v["state"] == "committed")) =>
            {
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
    pub(super) async fn republish_same(&mut self) {
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
    pub(super) async fn republish_different(&mut self) {
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
    pub(super) async fn idempotency_misuse(&mut self) {
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
}
