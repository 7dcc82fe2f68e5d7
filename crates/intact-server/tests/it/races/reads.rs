//! The racing clients' reads: manifests and files (whole and ranges) checked against the
//! publisher's bytes, paged `@versions` listings, the event log, a client's own transactions.

use intact_core::Digest;
use reqwest::StatusCode;

use super::client::Racer;
use super::content::Author;
use super::ledger::Counts;

impl Racer {
    pub(super) async fn read_op(&mut self) {
        match self.rng.below(10) {
            0..=4 => self.read_version().await,
            5..=6 => self.list_versions().await,
            7 => self.poll_events().await,
            _ => self.read_txn().await,
        }
    }

    /// Reads a version's manifest and one of its files (whole or a range): the bytes are the
    /// publisher's, and hash to what the manifest says.
    pub(super) async fn read_version(&mut self) {
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
    pub(super) async fn list_versions(&mut self) {
        let all: Vec<String> = self
            .plan
            .exact_names
            .iter()
            .chain(&self.plan.auto_names)
            .cloned()
            .collect();
        let name = self.rng.pick(&all).clone();
        let before = self.ledger().seen_versions_of(&name);
        // Small pages cross concurrent commits often; big ones keep long listings cheap.
        let limit = if self.rng.chance(40) {
            1 + self.rng.below(6)
        } else {
            50 + self.rng.below(200)
        };
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
    pub(super) async fn poll_events(&mut self) {
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
    pub(super) async fn read_txn(&mut self) {
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
