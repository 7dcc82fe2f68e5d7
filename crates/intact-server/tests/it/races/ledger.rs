//! What the racing clients saw, shared between them and the checker: every publish's
//! content, every acknowledged outcome, every transaction's fate as its client knows it,
//! the first read of every version, and the violations found along the way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use intact_core::Manifest;
use reqwest::StatusCode;
use serde_json::Value;

use super::content::{Author, Publish};

/// Locks `m`, ignoring poisoning: a panicking task must not hide what the others recorded.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// (name, version)
pub type Key = (String, String);

/// A 2xx answer that says a version holds some content: a commit, a multipart publish, an
/// idempotent retry that answered with the committed manifest.
#[derive(Debug, Clone)]
pub struct Ack {
    pub client: u32,
    pub op: &'static str,
    pub status: u16,
    /// The content the client sent.
    pub author: Author,
    /// The transaction the client committed, when it had one.
    pub txn: Option<String>,
    pub manifest: Value,
    /// The files the client had staged (sorted), when it knows them.
    pub paths: Option<Vec<String>>,
}

/// A `409 conflict` answer, with what the client had sent.
#[derive(Debug, Clone)]
pub struct ConflictSeen {
    pub client: u32,
    pub key: Key,
    pub author: Author,
    /// The files of the refused publish: path -> sha256 hex.
    pub files: BTreeMap<String, String>,
    /// A file whose PUT raced the commit: the transaction may have been compared with or
    /// without it (a conflict leaves the transaction open, so the PUT may land after).
    pub racing: Option<String>,
    pub differences: Value,
}

/// What a client knows of one transaction it opened.
#[derive(Debug, Clone, Default)]
pub struct TxnLog {
    pub client: u32,
    pub author: Option<Author>,
    pub key: Key,
    /// Commit answers: 201s and 200s.
    pub created: u32,
    pub identical: u32,
    /// A DELETE answered 204 while the client had not seen it finish.
    pub rolled_back: bool,
    /// The state a `409 not_open` named.
    pub not_open: Option<String>,
    /// Left open on purpose; its lease runs out.
    pub abandoned: bool,
}

#[derive(Default)]
pub struct Counts {
    pub operations: AtomicU64,
    pub reads: AtomicU64,
    pub commits: AtomicU64,
    pub identical: AtomicU64,
    pub conflicts: AtomicU64,
    pub locked: AtomicU64,
    pub aborts: AtomicU64,
    pub abandoned: AtomicU64,
    pub expired_seen: AtomicU64,
    pub uploads: AtomicU64,
    pub gc_runs: AtomicU64,
    pub clock_advances: AtomicU64,
    pub server_errors: AtomicU64,
    pub followed_events: AtomicU64,
}

impl Counts {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Ledger {
    pub seed: u64,
    authors: Mutex<HashMap<Author, Arc<Publish>>>,
    /// Every (name, version) a client tried or was given: what the checker probes.
    universe: Mutex<BTreeSet<Key>>,
    /// The first read of each version (a manifest, as JSON): later reads must equal it.
    seen: Mutex<HashMap<Key, Value>>,
    acks: Mutex<Vec<Ack>>,
    conflicts: Mutex<Vec<ConflictSeen>>,
    txns: Mutex<HashMap<String, TxnLog>>,
    violations: Mutex<Vec<String>>,
    pub counts: Counts,
}

impl Ledger {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            authors: Mutex::default(),
            universe: Mutex::default(),
            seen: Mutex::default(),
            acks: Mutex::default(),
            conflicts: Mutex::default(),
            txns: Mutex::default(),
            violations: Mutex::default(),
            counts: Counts::default(),
        }
    }

    /// Records a broken invariant (printed at once, so it shows next to the server's logs).
    pub fn violation(&self, what: String) {
        eprintln!("RACES VIOLATION (seed {}): {what}", self.seed);
        lock(&self.violations).push(what);
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    /// Registers a publish before any of its bytes leave the client.
    pub fn register(&self, p: Publish) -> Arc<Publish> {
        let p = Arc::new(p);
        lock(&self.authors).insert(p.author, p.clone());
        p
    }

    pub fn publish_of(&self, author: Author) -> Option<Arc<Publish>> {
        lock(&self.authors).get(&author).cloned()
    }

    pub fn touch(&self, name: &str, version: &str) {
        lock(&self.universe).insert((name.to_owned(), version.to_owned()));
    }

    pub fn universe(&self) -> Vec<Key> {
        lock(&self.universe).iter().cloned().collect()
    }

    pub fn random_key(&self, pick: u64) -> Option<Key> {
        let u = lock(&self.universe);
        if u.is_empty() {
            return None;
        }
        u.iter().nth((pick % u.len() as u64) as usize).cloned()
    }

    /// A version some client has read, with its manifest.
    pub fn random_seen(&self, pick: u64) -> Option<(Key, Value)> {
        let seen = lock(&self.seen);
        if seen.is_empty() {
            return None;
        }
        let mut keys: Vec<&Key> = seen.keys().collect();
        keys.sort();
        let k = keys[(pick % keys.len() as u64) as usize].clone();
        let v = seen[&k].clone();
        Some((k, v))
    }

    pub fn seen_versions_of(&self, name: &str) -> BTreeSet<String> {
        lock(&self.seen)
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn seen(&self) -> HashMap<Key, Value> {
        lock(&self.seen).clone()
    }

    pub fn seen_manifest(&self, key: &Key) -> Option<Value> {
        lock(&self.seen).get(key).cloned()
    }

    pub fn was_seen(&self, key: &Key) -> bool {
        lock(&self.seen).contains_key(key)
    }

    /// A read (or acknowledgment) of a visible version: it must be whole and belong to
    /// exactly one known publish, must not be the work of a transaction its client saw
    /// rolled back or expire, and must equal every earlier read of the same version.
    pub fn observe(&self, who: &str, value: &Value) -> Option<Manifest> {
        let m: Manifest = match serde_json::from_value(value.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.violation(format!("{who}: a manifest that does not parse ({e}): {value}"));
                return None;
            }
        };
        let key = (m.name.to_string(), m.version.to_string());
        self.touch(&key.0, &key.1);
        if let Some(author) = Author::of_metadata(&m.metadata) {
            match self.publish_of(author) {
                Some(p) => {
                    if let Err(e) = p.check(&m, None) {
                        self.violation(format!(
                            "{who}: {}@{} does not hold what its publisher sent: {e}",
                            key.0, key.1
                        ));
                    }
                }
                None => self.violation(format!("{who}: {}@{} names an unknown publish {author}", key.0, key.1)),
            }
        } else {
            self.violation(format!(
                "{who}: {}@{} has metadata naming no publish: {}",
                key.0, key.1, m.metadata
            ));
        }
        if let Some(txn) = &m.transaction
            && let Some(log) = lock(&self.txns).get(txn.as_str())
            && (log.rolled_back || log.not_open.is_some())
        {
            self.violation(format!(
                "{who}: {}@{} was committed by {txn}, which its client saw {}: {log:?}",
                key.0,
                key.1,
                log.not_open.as_deref().unwrap_or("rolled back")
            ));
        }
        let mut seen = lock(&self.seen);
        match seen.get(&key) {
            Some(first) if first != value => {
                let first = first.clone();
                drop(seen);
                self.violation(format!(
                    "{who}: {}@{} changed after it was seen: first {first}, now {value}",
                    key.0, key.1
                ));
            }
            Some(_) => {}
            None => {
                seen.insert(key, value.clone());
            }
        }
        Some(m)
    }

    pub fn ack(&self, ack: Ack) {
        lock(&self.acks).push(ack);
    }

    pub fn acks(&self) -> Vec<Ack> {
        lock(&self.acks).clone()
    }

    pub fn conflict(&self, c: ConflictSeen) {
        Counts::bump(&self.counts.conflicts);
        lock(&self.conflicts).push(c);
    }

    pub fn conflicts(&self) -> Vec<ConflictSeen> {
        lock(&self.conflicts).clone()
    }

    /// Updates (creating) what is known of transaction `id`.
    pub fn txn(&self, id: &str, update: impl FnOnce(&mut TxnLog)) {
        update(lock(&self.txns).entry(id.to_owned()).or_default());
    }

    pub fn txn_log(&self, id: &str) -> Option<TxnLog> {
        lock(&self.txns).get(id).cloned()
    }

    pub fn txns(&self) -> HashMap<String, TxnLog> {
        lock(&self.txns).clone()
    }
}

/// An error with its sources ("error sending request" alone says nothing).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// One task's HTTP side: its own client, and every answer counted and screened for 5xx.
pub struct Wire {
    pub who: String,
    pub http: reqwest::Client,
    /// The servers this task talks to (replicas behind one load balancer): each request goes
    /// to the next in turn, so one transaction is opened, filled and committed through
    /// different replicas, as a balancer without session affinity would send it.
    bases: Vec<String>,
    turn: AtomicUsize,
    pub ledger: Arc<Ledger>,
}

/// An answer's status, headers and body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Wire {
    pub fn new(who: String, base: &str, ledger: Arc<Ledger>) -> Self {
        Self::across(who, &[base.to_owned()], ledger)
    }

    /// A task whose requests take turns among the servers at `bases`.
    pub fn across(who: String, bases: &[String], ledger: Arc<Ledger>) -> Self {
        assert!(!bases.is_empty(), "a wire needs a server");
        Self {
            who,
            http: crate::client(),
            bases: bases.to_vec(),
            turn: AtomicUsize::new(0),
            ledger,
        }
    }

    /// `path` on the next server in turn.
    pub fn url(&self, path: &str) -> String {
        let i = self.turn.fetch_add(1, Ordering::Relaxed) % self.bases.len();
        format!("{}{path}", self.bases[i])
    }

    /// Sends `req`; `None` (recorded as a violation) when no answer came back.
    pub async fn raw(&self, what: &str, req: reqwest::RequestBuilder) -> Option<Answer> {
        Counts::bump(&self.ledger.counts.operations);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.ledger
                    .violation(format!("{}: {what}: no answer: {}", self.who, error_chain(&e)));
                return None;
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.ledger.violation(format!(
                    "{}: {what}: answer {status} broke off: {}",
                    self.who,
                    error_chain(&e)
                ));
                return None;
            }
        };
        if status.is_server_error() {
            Counts::bump(&self.ledger.counts.server_errors);
            self.ledger.violation(format!(
                "{}: {what}: {status} {}",
                self.who,
                String::from_utf8_lossy(&body)
            ));
        }
        Some(Answer { status, headers, body })
    }

    /// Sends `req` and parses a JSON answer (an empty body is `null`).
    pub async fn json(&self, what: &str, req: reqwest::RequestBuilder) -> Option<(StatusCode, Value)> {
        let a = self.raw(what, req).await?;
        if a.body.is_empty() {
            return Some((a.status, Value::Null));
        }
        match serde_json::from_slice(&a.body) {
            Ok(v) => Some((a.status, v)),
            Err(e) => {
                self.ledger.violation(format!(
                    "{}: {what}: {} answer is not JSON ({e}): {}",
                    self.who,
                    a.status,
                    String::from_utf8_lossy(&a.body)
                ));
                None
            }
        }
    }

    /// Records an answer the operation did not allow.
    pub fn unexpected(&self, what: &str, status: StatusCode, body: &Value) {
        self.ledger
            .violation(format!("{}: {what}: unexpected answer {status} {body}", self.who));
    }
}
