//! Races: many clients publishing, rolling back, committing and reading the same few names
//! at once, while garbage collection runs in a loop and the lease clock jumps ahead; then
//! every promise of the publish protocol is checked against what each client was told, not
//! just "no error" (docs/reliability.md, "Races").
//!
//! The race runs on the embedded default (one server, SQLite catalog, blob files), and on
//! PostgreSQL + S3 with two servers sharing that one database and bucket, every client's
//! requests taking turns between them as a load balancer without session affinity would
//! send them.
//!
//! Choices are seeded: the seed is printed, and `INTACT_RACES_SEED` replays it (the
//! interleaving of the tasks still varies from run to run).

mod check;
mod client;
mod content;
mod ledger;
mod ops;
mod reads;

use std::sync::Arc;
use std::time::Duration;

use intact_core::Timestamp;
use intact_store::{Clock, ManualClock, OffsetClock, PostgresCatalog, S3BlobStore, Store};
use intact_testkit::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{Server, report, sized};
use check::Blobs;
use client::Racer;
use ledger::{Counts, Ledger, Wire};

/// The lease of a transaction meant to finish (the clock jumps ahead by a few seconds at a
/// time; short leases are chosen on purpose to race expiry).
pub const LONG_LEASE: u64 = 900;

/// The servers' lease clock, which the race moves ahead. The embedded catalog reads a
/// `ManualClock`; PostgreSQL reads its own clock, which can only be shifted forward (an
/// `OffsetClock` added to it by every replica's catalog).
#[derive(Clone)]
pub enum LeaseClock {
    Manual(ManualClock),
    Offset(OffsetClock),
}

impl LeaseClock {
    pub fn advance(&self, by: Duration) {
        match self {
            Self::Manual(c) => c.advance(by),
            Self::Offset(c) => c.advance(by),
        }
    }
}

impl Clock for LeaseClock {
    fn now(&self) -> Timestamp {
        match self {
            Self::Manual(c) => c.now(),
            Self::Offset(c) => c.now(),
        }
    }
}

/// How big the race is and which names it fights over.
pub struct Plan {
    pub clients: usize,
    pub rounds: usize,
    /// Names published with exact versions.
    pub exact_names: Vec<String>,
    /// Names published only with `auto`.
    pub auto_names: Vec<String>,
}

/// A small seeded generator (splitmix64): the same seed makes the same choices on every
/// platform and crate version, which a replay needs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// `INTACT_RACES_SEED` (decimal or `0x` hex), or a fresh one.
fn seed() -> u64 {
    if let Ok(s) = std::env::var("INTACT_RACES_SEED") {
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        return parsed.unwrap_or_else(|e| panic!("INTACT_RACES_SEED={s:?} is not a number: {e}"));
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
}

/// `POST /api/v1/admin/gc` with no grace period, over and over, until told to stop.
async fn collect_garbage(wire: Wire, mut rng: Rng, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let req = wire
            .http
            .post(wire.url("/api/v1/admin/gc"))
            .json(&json!({"grace_seconds": 0}));
        match wire.json("gc", req).await {
            Some((StatusCode::OK, v)) if v["blobs_deleted"].is_u64() && v["expired_transactions"].is_u64() => {
                Counts::bump(&wire.ledger.counts.gc_runs);
            }
            Some((status, v)) => wire.unexpected("gc", status, &v),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.below(25))).await;
    }
}

/// Moves the lease clock ahead a few seconds at a time, so short leases run out mid-race.
async fn advance_clock(clock: LeaseClock, ledger: Arc<Ledger>, mut rng: Rng, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(20 + rng.below(40))).await;
        clock.advance(Duration::from_millis(1000 + rng.below(4000)));
        Counts::bump(&ledger.counts.clock_advances);
    }
}

/// Follows the event log with long polls, in pages of `limit`, as a real follower would:
/// stores `next`, asks again. Checks each page is in order and continues the last, and that
/// a `committed` event's version is readable at once with that event's `seq`. Once `drain`
/// is set it stops waiting and returns when it has caught up.
async fn follow(wire: Wire, limit: u32, drain: watch::Receiver<bool>) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    let mut next = 0i64;
    loop {
        let draining = *drain.borrow();
        let wait = if draining { 0 } else { 1 };
        let req = wire.http.get(wire.url(&format!(
            "/api/v1/events?after={next}&wait_seconds={wait}&limit={limit}"
        )));
        Counts::bump(&wire.ledger.counts.reads);
        let Some((status, v)) = wire.json("follow events", req).await else {
            return seen;
        };
        if status != StatusCode::OK {
            wire.unexpected("follow events", status, &v);
            return seen;
        }
        let page = v["events"].as_array().cloned().unwrap_or_default();
        for e in &page {
            let seq = e["seq"].as_i64().unwrap_or_default();
            if seq <= next {
                wire.ledger
                    .violation(format!("{}: event seq {seq} after {next}: {v}", wire.who));
            }
            next = seq;
            Counts::bump(&wire.ledger.counts.followed_events);
            if e["kind"] == "committed" {
                let (name, version) = (e["name"].as_str().unwrap_or(""), e["version"].as_str().unwrap_or(""));
                let what = format!("read of {name}@{version} after its committed event {seq}");
                let req = wire
                    .http
                    .get(wire.url(&format!("/api/v1/repos/files/{name}/@v/{version}")));
                match wire.json(&what, req).await {
                    Some((StatusCode::OK, m)) => {
                        wire.ledger.observe(&format!("{}: {what}", wire.who), &m);
                        if m["seq"] != seq || m["transaction"] != e["transaction"] {
                            wire.ledger
                                .violation(format!("{}: {what}: the manifest is {m}, the event {e}", wire.who));
                        }
                    }
                    Some((status, m)) => wire.unexpected(&what, status, &m),
                    None => {}
                }
            }
        }
        if v["next"] != next {
            wire.ledger
                .violation(format!("{}: next is {} after events up to {next}", wire.who, v["next"]));
        }
        seen.extend(page.iter().cloned());
        if draining && page.is_empty() {
            return seen;
        }
    }
}

/// The plan of both races: `sized` picks the CI or the full size.
fn plan() -> Arc<Plan> {
    Arc::new(Plan {
        clients: sized(10, 32),
        rounds: sized(50, 600),
        exact_names: sized(
            vec!["race/tools/cli", "race/shot-010"],
            vec!["race/tools/cli", "race/shot-010", "race/shot-020", "race/assets/tree"],
        )
        .into_iter()
        .map(str::to_owned)
        .collect(),
        auto_names: sized(vec!["race/builds"], vec!["race/builds", "race/nightly"])
            .into_iter()
            .map(str::to_owned)
            .collect(),
    })
}

/// What a race runs on.
struct Arena<'a> {
    /// The reliability report's suite name.
    suite: &'static str,
    /// The servers (replicas of one store): every client's requests take turns among them,
    /// garbage is collected on each, and each is followed by its own event followers.
    bases: Vec<String>,
    clock: LeaseClock,
    blobs: Blobs<'a>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_race_the_same_names_while_gc_runs() {
    let s = Server::start().await;
    race(Arena {
        suite: "races",
        bases: vec![s.base.clone()],
        clock: LeaseClock::Manual(s.clock.clone()),
        blobs: Blobs::Dir(&s.data),
    })
    .await;
    s.stop().await;
}

/// The same race on two replicas sharing one PostgreSQL catalog and one S3 bucket (Garage).
/// Each replica has its own catalog pool, its own S3 client and its own data dir, as two
/// processes would; they share only the database, the bucket and the test's shift of the
/// database's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_race_the_same_names_across_two_replicas_on_postgres_and_s3() {
    let db = TestDatabase::create().await;
    let settings = crate::s3::garage_settings("races").await;
    let clock = OffsetClock::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let catalog = PostgresCatalog::open(&db.url)
            .await
            .expect("open the PostgreSQL catalog")
            .with_time_offset(clock.clone());
        let blobs = S3BlobStore::open(&settings).await.expect("open the S3 blob store");
        let store = Store::new(
            Arc::new(catalog),
            Arc::new(blobs),
            Arc::new(clock.clone()),
            intact_server::Config::embedded_default().store_config(),
        );
        replicas.push(Server::start_on_store(store).await);
    }
    // The checker's own view of the bucket (it holds nothing pending).
    let bucket = S3BlobStore::open(&settings).await.expect("open the S3 blob store");
    race(Arena {
        suite: "races-postgres-s3",
        bases: replicas.iter().map(|r| r.base.clone()).collect(),
        clock: LeaseClock::Offset(clock),
        blobs: Blobs::Bucket(&bucket),
    })
    .await;
    for r in replicas {
        r.stop().await;
    }
}

/// Runs the race on `arena`, checks every promise, reports the figures, and fails on any
/// violation.
async fn race(arena: Arena<'_>) {
    let seed = seed();
    println!("{}: seed {seed} (replay with INTACT_RACES_SEED={seed})", arena.suite);
    let plan = plan();
    let ledger = Arc::new(Ledger::new(seed));
    let on = |who: String, base: &String| Wire::new(who, base, ledger.clone());
    let servers = arena.bases.len();
    // Names a task by its server when there is more than one.
    let named = |who: &str, i: usize| {
        if servers == 1 {
            who.to_owned()
        } else {
            format!("{who} on server {i}")
        }
    };

    let (stop, stopped) = watch::channel(false);
    let (drain, draining) = watch::channel(false);
    let mut background: Vec<_> = arena
        .bases
        .iter()
        .enumerate()
        .map(|(i, base)| {
            tokio::spawn(collect_garbage(
                on(named("gc", i), base),
                Rng::new(seed ^ 0x6c ^ ((i as u64) << 32)),
                stopped.clone(),
            ))
        })
        .collect();
    background.push(tokio::spawn(advance_clock(
        arena.clock.clone(),
        ledger.clone(),
        Rng::new(seed ^ 0xc1),
        stopped.clone(),
    )));
    let followers: Vec<_> = arena
        .bases
        .iter()
        .enumerate()
        .flat_map(|(i, base)| [7, 500].map(|limit| (i, base, limit)))
        .map(|(i, base, limit)| {
            tokio::spawn(follow(
                on(named(&format!("follower (pages of {limit})"), i), base),
                limit,
                draining.clone(),
            ))
        })
        .collect();
    let clients: Vec<_> = (0..plan.clients)
        .map(|i| {
            // Each client starts on another server, so the first requests are spread too.
            let mut bases = arena.bases.clone();
            bases.rotate_left(i % servers);
            let racer = Racer::new(i as u32, &bases, arena.clock.clone(), ledger.clone(), plan.clone());
            tokio::spawn(racer.run())
        })
        .collect();
    for c in clients {
        if let Err(e) = c.await {
            ledger.violation(format!("a client task failed: {e}"));
        }
    }
    let _ = stop.send(true);
    for task in background {
        if let Err(e) = task.await {
            ledger.violation(format!("a background task failed: {e}"));
        }
    }

    // Every lease runs out; a last collection with no grace leaves only what is committed.
    arena.clock.advance(Duration::from_secs(4 * LONG_LEASE));
    // The checker reads through every server in turn.
    let checker = Wire::across("checker".to_owned(), &arena.bases, ledger.clone());
    check::final_gc(&checker).await;
    let _ = drain.send(true);
    let mut logs = Vec::new();
    for f in followers {
        match f.await {
            Ok(log) => logs.push(log),
            Err(e) => ledger.violation(format!("a follower failed: {e}")),
        }
    }
    let figures = check::everything(&arena.blobs, &checker, &ledger, &plan, logs).await;
    check::auto_numbers_reused(&checker, &ledger, &figures.auto_max).await;

    let c = &ledger.counts;
    let violations = ledger.violations();
    report(
        arena.suite,
        json!({
            "seed": seed,
            "servers": servers,
            "clients": plan.clients,
            "rounds": plan.rounds,
            "operations": Counts::get(&c.operations),
            "commits": Counts::get(&c.commits),
            "identical_republishes": Counts::get(&c.identical),
            "conflicts": Counts::get(&c.conflicts),
            "locked": Counts::get(&c.locked),
            "aborts": Counts::get(&c.aborts),
            "abandoned": Counts::get(&c.abandoned),
            "expired_seen": Counts::get(&c.expired_seen),
            "uploads": Counts::get(&c.uploads),
            "gc_runs": Counts::get(&c.gc_runs),
            "clock_advances": Counts::get(&c.clock_advances),
            "reads": Counts::get(&c.reads),
            "followed_events": Counts::get(&c.followed_events),
            "versions": figures.versions,
            "events": figures.events,
            "blobs": figures.blobs,
            "auto_gaps": figures.auto_gaps,
            "transactions_checked": figures.txns_checked,
            "server_errors": Counts::get(&c.server_errors),
            "violations": violations.len(),
        }),
    );
    if !violations.is_empty() {
        let shown: Vec<&String> = violations.iter().take(40).collect();
        panic!(
            "{} violation(s) (seed {seed}; replay with INTACT_RACES_SEED={seed}):\n{}",
            violations.len(),
            shown.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n")
        );
    }
}
