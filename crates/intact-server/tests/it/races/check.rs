//! The checks once the race is over, against what every client was told: every visible
//! version whole and committed by exactly one acknowledged publish; every acknowledgment
//! visible with exactly the bytes acknowledged; nothing of a rolled-back or expired
//! transaction visible; the event log, the listings and the `auto` numbers consistent with
//! the versions; and in the blob store (files on disk or a bucket), exactly the blobs
//! committed versions name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use futures::TryStreamExt;
use intact_core::Manifest;
use intact_store::{BlobStore, BlobTestHooks, S3BlobStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Plan;
use super::content::Author;
use super::ledger::{Counts, Key, Ledger, Wire};
use crate::files_under;

/// Where the servers keep their blobs, as the final check looks at them.
pub enum Blobs<'a> {
    /// Blob files under the data dir `0` (`blobs/`, pending ones in `tmp/`).
    Dir(&'a Path),
    /// Objects in a bucket (under the test's prefix), shared by every replica.
    Bucket(&'a S3BlobStore),
}

/// What the final state held.
#[derive(Debug, Default)]
pub struct Figures {
    pub versions: usize,
    pub events: usize,
    pub blobs: usize,
    pub txns_checked: usize,
    /// The highest committed `auto` number per name.
    pub auto_max: BTreeMap<String, u64>,
    /// Numbers below the highest left unused (their transactions rolled back or expired).
    pub auto_gaps: usize,
}

/// Collects garbage with no grace period (twice: the first also expires what is overdue).
pub async fn final_gc(wire: &Wire) {
    for _ in 0..2 {
        let req = wire
            .http
            .post(wire.url("/api/v1/admin/gc"))
            .json(&json!({"grace_seconds": 0}));
        match wire.json("final gc", req).await {
            Some((StatusCode::OK, _)) => Counts::bump(&wire.ledger.counts.gc_runs),
            Some((status, v)) => wire.unexpected("final gc", status, &v),
            None => {}
        }
    }
}

/// The whole event log.
async fn all_events(wire: &Wire) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let req = wire
            .http
            .get(wire.url(&format!("/api/v1/events?after={after}&limit=10000")));
        let Some((status, v)) = wire.json("final event log", req).await else {
            return out;
        };
        if status != StatusCode::OK {
            wire.unexpected("final event log", status, &v);
            return out;
        }
        let page = v["events"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        after = page.last().and_then(|e| e["seq"].as_i64()).unwrap_or(after);
        out.extend(page);
    }
}

/// Every committed version of `name`, oldest first (all pages).
async fn listing(wire: &Wire, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
        let req = wire
            .http
            .get(wire.url(&format!("/api/v1/repos/files/{name}/@versions?limit=1000{q}")));
        let Some((status, v)) = wire.json("final @versions", req).await else {
            return out;
        };
        if status != StatusCode::OK {
            wire.unexpected("final @versions", status, &v);
            return out;
        }
        for e in v["versions"].as_array().cloned().unwrap_or_default() {
            out.push(e["version"].as_str().unwrap_or_default().to_owned());
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return out,
        }
    }
}

pub async fn everything(
    blobs: &Blobs<'_>,
    wire: &Wire,
    ledger: &Ledger,
    plan: &Plan,
    followers: Vec<Vec<Value>>,
) -> Figures {
    let mut figures = Figures::default();
    let events = all_events(wire).await;
    figures.events = events.len();

    // What is visible: every version anyone tried, and `auto` numbers past the highest one
    // anyone was given or saw in the log.
    let mut probe: BTreeSet<Key> = ledger.universe().into_iter().collect();
    for name in &plan.auto_names {
        let given = probe
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let in_log = events
            .iter()
            .filter(|e| e["name"] == name.as_str())
            .filter_map(|e| e["version"].as_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        for n in 1..=given.max(in_log) + 2 {
            probe.insert((name.clone(), n.to_string()));
        }
    }
    let mut visible: BTreeMap<Key, (Value, Manifest)> = BTreeMap::new();
    for key in &probe {
        let what = format!("final read of {}@{}", key.0, key.1);
        let req = wire
            .http
            .get(wire.url(&format!("/api/v1/repos/files/{}/@v/{}", key.0, key.1)));
        match wire.json(&what, req).await {
            Some((StatusCode::OK, v)) => {
                if let Some(m) = ledger.observe(&format!("checker: {what}"), &v) {
                    visible.insert(key.clone(), (v, m));
                }
            }
            Some((StatusCode::NOT_FOUND, _)) if ledger.was_seen(key) => {
                ledger.violation(format!("{what}: 404 for a version seen before"));
            }
            Some((StatusCode::NOT_FOUND, _)) => {}
            Some((status, v)) => wire.unexpected(&what, status, &v),
            None => {}
        }
    }
    figures.versions = visible.len();
    for (key, first) in ledger.seen() {
        if !visible.contains_key(&key) {
            ledger.violation(format!(
                "{}@{} was seen ({first}) but is not visible at the end",
                key.0, key.1
            ));
        }
    }

    check_acks(ledger, &visible);
    figures.txns_checked = check_txns(wire, ledger, &visible, &events).await;
    check_events(ledger, &visible, &events, &followers);
    check_listings(wire, ledger, plan, &visible).await;
    (figures.auto_max, figures.auto_gaps) = check_auto_numbers(ledger, plan, &visible, &events);
    check_conflicts(ledger, &visible);
    figures.blobs = check_blobs(wire, ledger, blobs, &visible).await;
    figures
}

/// Visible versions and acknowledgments match one to one: every visible version was made
/// visible by exactly one acknowledged commit (a `201`) of the publish its metadata names,
/// and every acknowledgment (`201` or `200`) answered with the manifest that is visible.
fn check_acks(ledger: &Ledger, visible: &BTreeMap<Key, (Value, Manifest)>) {
    let mut creators: HashMap<Key, Vec<String>> = HashMap::new();
    for ack in ledger.acks() {
        let Some(key) = ack.manifest["name"]
            .as_str()
            .zip(ack.manifest["version"].as_str())
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        else {
            ledger.violation(format!("an acknowledgment without a version: {ack:?}"));
            continue;
        };
        let Some((value, m)) = visible.get(&key) else {
            ledger.violation(format!(
                "client {} was told {} for {}@{} ({}), which is not visible: {}",
                ack.client, ack.status, key.0, key.1, ack.op, ack.manifest
            ));
            continue;
        };
        if *value != ack.manifest {
            ledger.violation(format!(
                "client {} was told {} for {}@{} ({}) with {}, but it holds {value}",
                ack.client, ack.status, key.0, key.1, ack.op, ack.manifest
            ));
        }
        if Author::of_metadata(&m.metadata) != Some(ack.author) {
            ledger.violation(format!(
                "client {} sent {}'s content to {}@{} and was told {}, but the version holds {}",
                ack.client, ack.author, key.0, key.1, ack.status, m.metadata
            ));
        }
        if let (Some(paths), Some(p)) = (&ack.paths, ledger.publish_of(ack.author))
            && let Err(e) = p.check(m, Some(paths))
        {
            ledger.violation(format!(
                "{}@{} against client {}'s acknowledgment: {e}",
                key.0, key.1, ack.client
            ));
        }
        if ack.status == 201 {
            if let Some(txn) = &ack.txn
                && m.transaction.as_ref().map(|t| t.as_str()) != Some(txn.as_str())
            {
                ledger.violation(format!(
                    "client {} committed {}@{} with {txn} (201), but {:?} committed it",
                    ack.client, key.0, key.1, m.transaction
                ));
            }
            creators
                .entry(key)
                .or_default()
                .push(format!("client {} ({})", ack.client, ack.op));
        }
    }
    for key in visible.keys() {
        match creators.get(key).map(Vec::len).unwrap_or(0) {
            1 => {}
            0 => ledger.violation(format!(
                "{}@{} is visible, but no client was told it made it visible",
                key.0, key.1
            )),
            _ => ledger.violation(format!(
                "{}@{} was made visible {} times: {:?}",
                key.0,
                key.1,
                creators[key].len(),
                creators[key]
            )),
        }
    }
}

/// Every transaction a client opened ended the way the client was told, and left exactly
/// the events its end implies. Returns how many were checked.
async fn check_txns(
    wire: &Wire,
    ledger: &Ledger,
    visible: &BTreeMap<Key, (Value, Manifest)>,
    events: &[Value],
) -> usize {
    let mut by_txn: HashMap<&str, Vec<&Value>> = HashMap::new();
    for e in events {
        if let Some(t) = e["transaction"].as_str() {
            by_txn.entry(t).or_default().push(e);
        }
    }
    let txns = ledger.txns();
    let mut ids: Vec<&String> = txns.keys().collect();
    ids.sort();
    for id in &ids {
        let log = &txns[*id];
        let what = format!("transaction {id} of client {} ({:?})", log.client, log.author);
        let req = wire.http.get(wire.url(&format!("/api/v1/transactions/{id}")));
        let Some((status, v)) = wire.json(&what, req).await else {
            continue;
        };
        if status != StatusCode::OK {
            wire.unexpected(&what, status, &v);
            continue;
        }
        let state = v["state"].as_str().unwrap_or_default();
        let committed_it = visible
            .get(&log.key)
            .and_then(|(_, m)| m.transaction.as_ref())
            .is_some_and(|t| t.as_str() == id.as_str());
        let told_landed = log.created + log.identical > 0;
        let ok = match state {
            "committed" => told_landed && (log.created > 0) == committed_it,
            "aborted" | "expired" => !told_landed && !committed_it,
            _ => false,
        };
        if !ok || log.created > 1 {
            ledger.violation(format!(
                "{what}: ends {state} (made {}@{} visible: {committed_it}), but its client was told {log:?}",
                log.key.0, log.key.1
            ));
        }
        let mine = by_txn.get(id.as_str()).cloned().unwrap_or_default();
        let kinds: Vec<(&str, &str)> = mine
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or_default(),
                    e["data"]["reason"].as_str().unwrap_or(""),
                )
            })
            .collect();
        let expected: &[(&str, &str)] = match state {
            "committed" if log.created > 0 => &[("committed", "")],
            "committed" => &[],
            "aborted" => &[("aborted", "rolled back")],
            "expired" => &[("aborted", "lease expired")],
            _ => &[],
        };
        if kinds != expected {
            ledger.violation(format!(
                "{what}: ends {state}, so its events should be {expected:?}, but they are {kinds:?}"
            ));
        }
    }
    ids.len()
}

/// One `committed` event per visible version, in increasing `seq`, agreeing with its
/// manifest; followers that long-polled the log saw exactly the same log.
fn check_events(
    ledger: &Ledger,
    visible: &BTreeMap<Key, (Value, Manifest)>,
    events: &[Value],
    followers: &[Vec<Value>],
) {
    let mut last = 0;
    let mut committed: HashMap<Key, Vec<i64>> = HashMap::new();
    for e in events {
        let seq = e["seq"].as_i64().unwrap_or_default();
        if seq <= last {
            ledger.violation(format!("event log out of order: seq {seq} after {last}"));
        }
        last = seq;
        let key = (
            e["name"].as_str().unwrap_or_default().to_owned(),
            e["version"].as_str().unwrap_or_default().to_owned(),
        );
        match e["kind"].as_str() {
            Some("committed") => {
                committed.entry(key.clone()).or_default().push(seq);
                let Some((_, m)) = visible.get(&key) else {
                    ledger.violation(format!(
                        "a committed event for {}@{}, which is not visible: {e}",
                        key.0, key.1
                    ));
                    continue;
                };
                let fingerprint = m.fingerprint().to_hex();
                let agrees = m.seq == seq
                    && e["transaction"].as_str() == m.transaction.as_ref().map(|t| t.as_str())
                    && e["data"]["files"] == m.files.len()
                    && e["data"]["size"] == m.total_size()
                    && e["data"]["fingerprint"] == fingerprint.as_str();
                if !agrees {
                    ledger.violation(format!(
                        "the committed event {e} disagrees with the manifest of {}@{} (seq {}, transaction {:?}, {} files, {} bytes, fingerprint {fingerprint})",
                        key.0,
                        key.1,
                        m.seq,
                        m.transaction,
                        m.files.len(),
                        m.total_size()
                    ));
                }
            }
            Some("aborted") => {
                let reason = e["data"]["reason"].as_str().unwrap_or_default();
                if reason != "rolled back" && reason != "lease expired" {
                    ledger.violation(format!("an aborted event with reason {reason:?}: {e}"));
                }
            }
            _ => ledger.violation(format!("an event of an unexpected kind: {e}")),
        }
    }
    for key in visible.keys() {
        let n = committed.get(key).map(Vec::len).unwrap_or(0);
        if n != 1 {
            ledger.violation(format!("{}@{} has {n} committed events", key.0, key.1));
        }
    }
    for (i, seen) in followers.iter().enumerate() {
        if seen.as_slice() != events {
            let at = seen.iter().zip(events).position(|(a, b)| a != b);
            ledger.violation(format!(
                "follower {i} saw {} events, the log holds {}; first difference at {at:?}: {:?} vs {:?}",
                seen.len(),
                events.len(),
                at.and_then(|i| seen.get(i)),
                at.and_then(|i| events.get(i)),
            ));
        }
    }
}

/// `@versions` lists exactly the visible versions of each name, in commit order.
async fn check_listings(wire: &Wire, ledger: &Ledger, plan: &Plan, visible: &BTreeMap<Key, (Value, Manifest)>) {
    for name in plan.exact_names.iter().chain(&plan.auto_names) {
        let mut expected: Vec<(i64, String)> = visible
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, v), (_, m))| (m.seq, v.clone()))
            .collect();
        expected.sort();
        let expected: Vec<String> = expected.into_iter().map(|(_, v)| v).collect();
        let listed = listing(wire, name).await;
        if listed != expected {
            ledger.violation(format!(
                "@versions of {name} lists {listed:?}, the visible versions in commit order are {expected:?}"
            ));
        }
    }
}

/// `auto` numbers: on an `auto`-only name every version is a number, and a number below the
/// highest is missing only where a transaction holding it was rolled back or expired.
/// Returns the highest number per name and how many gaps there are.
fn check_auto_numbers(
    ledger: &Ledger,
    plan: &Plan,
    visible: &BTreeMap<Key, (Value, Manifest)>,
    events: &[Value],
) -> (BTreeMap<String, u64>, usize) {
    let mut highest = BTreeMap::new();
    let mut gaps = 0;
    for name in &plan.auto_names {
        let mut numbers = BTreeSet::new();
        for (n, v) in visible.keys().filter(|(n, _)| n == name) {
            match v.parse::<u64>() {
                Ok(k) if k > 0 && k.to_string() == *v => {
                    numbers.insert(k);
                }
                _ => ledger.violation(format!("{n}@{v}: an `auto` name holds a version that is no number")),
            }
        }
        let released: BTreeSet<u64> = events
            .iter()
            .filter(|e| e["kind"] == "aborted" && e["name"] == name.as_str())
            .filter_map(|e| e["version"].as_str()?.parse().ok())
            .collect();
        let max = numbers.last().copied().unwrap_or(0);
        let unexplained: Vec<u64> = (1..max)
            .filter(|k| !numbers.contains(k) && !released.contains(k))
            .collect();
        if !unexplained.is_empty() {
            ledger.violation(format!(
                "{name}: `auto` skipped {unexplained:?}, which no rolled-back or expired transaction held (committed {numbers:?})"
            ));
        }
        gaps += (1..max).filter(|k| !numbers.contains(k)).count();
        highest.insert(name.clone(), max);
    }
    (highest, gaps)
}

/// Every `409 conflict` named the differences between the version (as it is) and what the
/// refused publish sent.
fn check_conflicts(ledger: &Ledger, visible: &BTreeMap<Key, (Value, Manifest)>) {
    for c in ledger.conflicts() {
        let Some((_, m)) = visible.get(&c.key) else {
            ledger.violation(format!(
                "client {} was refused {}@{} as a conflict, but the version is not visible",
                c.client, c.key.0, c.key.1
            ));
            continue;
        };
        let Some(publish) = ledger.publish_of(c.author) else {
            continue;
        };
        let mut expected = differences(m, &c.files, &publish.metadata);
        if c.differences != expected
            && let Some(racing) = &c.racing
        {
            let mut without = c.files.clone();
            without.remove(racing);
            expected = differences(m, &without, &publish.metadata);
        }
        if c.differences != expected {
            ledger.violation(format!(
                "client {}'s conflict on {}@{} named {}, but the differences are {expected}",
                c.client, c.key.0, c.key.1, c.differences
            ));
        }
    }
}

/// What a conflict between version `m` and a publish of `files` with `metadata` must name.
fn differences(m: &Manifest, files: &BTreeMap<String, String>, metadata: &Value) -> Value {
    let existing: BTreeMap<String, String> = m
        .files
        .iter()
        .map(|f| (f.path.to_string(), f.sha256.to_hex()))
        .collect();
    let changed: Vec<Value> = existing
        .iter()
        .filter_map(|(p, d)| {
            let new = files.get(p)?;
            (new != d).then(|| json!({"path": p, "existing": d, "new": new}))
        })
        .collect();
    let only_existing: Vec<&String> = existing.keys().filter(|p| !files.contains_key(*p)).collect();
    let only_new: Vec<&String> = files.keys().filter(|p| !existing.contains_key(*p)).collect();
    let mut metadata_keys: Vec<String> = Vec::new();
    if let (Some(old), Some(new)) = (m.metadata.as_object(), metadata.as_object()) {
        metadata_keys.extend(
            old.iter()
                .filter(|(k, v)| new.get(*k) != Some(*v))
                .map(|(k, _)| k.clone()),
        );
        metadata_keys.extend(new.keys().filter(|k| !old.contains_key(*k)).cloned());
    }
    metadata_keys.sort();
    json!({
        "changed": changed,
        "only_existing": only_existing,
        "only_new": only_new,
        "metadata_keys": metadata_keys,
    })
}

/// After the final collection: the stored blobs are exactly those committed versions name,
/// nothing is left pending (`tmp/`, or `pending/` in the bucket), and `verify` re-hashes them
/// all fine. Returns how many blobs there are.
async fn check_blobs(
    wire: &Wire,
    ledger: &Ledger,
    blobs: &Blobs<'_>,
    visible: &BTreeMap<Key, (Value, Manifest)>,
) -> usize {
    let referenced: BTreeSet<String> = visible
        .values()
        .flat_map(|(_, m)| m.files.iter().map(|f| f.sha256.to_hex()))
        .collect();
    let (stored, pending): (BTreeSet<String>, Vec<String>) = match blobs {
        Blobs::Dir(data) => (
            files_under(&data.join("blobs"))
                .iter()
                .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
                .collect(),
            files_under(&data.join("tmp"))
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        ),
        Blobs::Bucket(bucket) => {
            let listed: Result<Vec<_>, _> = bucket.list(None).try_collect().await;
            let stored = match listed {
                Ok(digests) => digests.iter().map(|d| d.to_hex()).collect(),
                Err(e) => {
                    ledger.violation(format!("listing the bucket's blobs failed: {e}"));
                    BTreeSet::new()
                }
            };
            let pending = match bucket.pending_count().await {
                Ok(0) => Vec::new(),
                Ok(n) => vec![format!("{n} pending object(s)")],
                Err(e) => vec![format!("counting pending objects failed: {e}")],
            };
            (stored, pending)
        }
    };
    let stray: Vec<&String> = stored.difference(&referenced).collect();
    let lost: Vec<&String> = referenced.difference(&stored).collect();
    if !stray.is_empty() || !lost.is_empty() {
        ledger.violation(format!(
            "stored blobs are not the committed ones: {} unreferenced left behind {stray:?}, {} referenced missing {lost:?}",
            stray.len(),
            lost.len()
        ));
    }
    if !pending.is_empty() {
        ledger.violation(format!("pending data is left after the final collection: {pending:?}"));
    }
    let req = wire.http.post(wire.url("/api/v1/admin/verify")).json(&json!({}));
    match wire.json("verify", req).await {
        Some((StatusCode::OK, v))
            if v["ok"] == true && v["problems"] == json!([]) && v["blobs_checked"] == referenced.len() => {}
        Some((StatusCode::OK, v)) => {
            ledger.violation(format!("verify of {} committed blobs answered {v}", referenced.len()));
        }
        Some((status, v)) => wire.unexpected("verify", status, &v),
        None => {}
    }
    referenced.len()
}

/// With nothing open, `auto` gives the next number after the highest committed, and a
/// number rolled back while it was the highest is handed out again.
pub async fn auto_numbers_reused(wire: &Wire, ledger: &Ledger, highest: &BTreeMap<String, u64>) {
    for (name, max) in highest {
        let next = (max + 1).to_string();
        for round in 0..2 {
            let what = format!("quiet `auto` open of {name} (round {round})");
            let req = wire
                .http
                .post(wire.url("/api/v1/repos/files/transactions"))
                .json(&json!({"name": name, "version": "auto"}));
            let Some((status, v)) = wire.json(&what, req).await else {
                return;
            };
            if status != StatusCode::CREATED || v["version"] != next.as_str() {
                ledger.violation(format!(
                    "{what}: answered {status} {v}, expected version {next} (highest committed {max}, nothing open)"
                ));
                return;
            }
            let id = v["id"].as_str().unwrap_or_default();
            let req = wire.http.delete(wire.url(&format!("/api/v1/transactions/{id}")));
            match wire.json(&format!("rollback of {id}"), req).await {
                Some((StatusCode::NO_CONTENT, _)) => {}
                Some((status, v)) => wire.unexpected(&format!("rollback of {id}"), status, &v),
                None => {}
            }
        }
    }
}
