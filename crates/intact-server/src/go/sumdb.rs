//! The checksum-database proxy of a Go proxy repo: `/go/{repo}/sumdb/{name}/supported`,
//! `/latest`, `/lookup/M@V` and `/tile/...`, so a go command whose only route out is intact
//! still verifies go.sum.
//!
//! Nothing is passed on unverified:
//! * a tree head (`latest`, and the one in every lookup answer) must be signed by the
//!   configured key and must extend the newest tree head already accepted (checked through
//!   the tiles: the older tree's hash is recomputed from the newer tree's tiles); one that
//!   does not is a forked log: refused, logged, never served;
//! * a tile must hash, through its parent tiles, up to an accepted tree head;
//! * a lookup's record must hash to the leaf the tiles hold for its id, and name the module
//!   version asked for.
//!
//! Full tiles never change: once verified they are stored in the repo (as versions of
//! `@sumdb/{name}/tile/...`), so they are served offline and on every replica. The newest
//! accepted tree head is stored too (`@sumdb/{name}/latest`), so a restart or another replica
//! checks the next one against it.

use std::sync::Arc;
use std::time::Duration;

use intact_core::{Name, RepoName, Version};
use intact_go::module_path;
use intact_go::sumdb::note::Verifier;
use intact_go::sumdb::tlog::{self, LogHash, Tile, TilePlan, Tree};
use intact_store::Store;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::ProxyError;
use super::layout;
use super::upstream::{Entry, ProtocolPath, Source, Upstream};
use crate::config::{ChecksumDbConfig, NetworkMode};

/// Tile height of the Go checksum database protocol.
const TILE_HEIGHT: u32 = 8;
/// The largest signed note accepted.
const MAX_NOTE: u64 = 16 << 10;
/// The largest lookup answer accepted (a record and a signed note).
const MAX_LOOKUP: u64 = 64 << 10;
/// The largest data tile accepted: 256 records of at most a few KiB.
const MAX_DATA_TILE: u64 = 4 << 20;
/// How long an accepted `latest` is served before the database is asked again.
const LATEST_TTL: Duration = Duration::from_secs(30);
/// The longest one request to the database may take, whatever the repo's fetch deadline.
const MAX_REQUEST_TIME: Duration = Duration::from_secs(60);
/// The soonest a tile beyond the accepted tree makes intact ask for a newer tree head again.
const LATEST_RECHECK: Duration = Duration::from_secs(1);
const TILE_FILE: &str = "tile";
const NOTE_FILE: &str = "note";
const LOOKUP_FILE: &str = "lookup";
/// How long a tree head is kept after a newer one was stored (see `drop_superseded_heads`).
const SUPERSEDED_HEAD_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The partial tiles of one tree (the last tile of each level), by tile.
type PartialTiles = std::collections::HashMap<Tile, Vec<u8>>;

/// An accepted tree head, with its partial tiles: they are what a later check of an older or
/// forked tree head against it reads, and they may no longer be on offer upstream (a forked
/// log has none for this tree).
#[derive(Debug, Clone)]
struct Accepted {
    tree: Tree,
    note: Arc<Vec<u8>>,
    partial: Arc<PartialTiles>,
    checked_at: Instant,
}

/// One checksum database, proxied for one repo.
pub struct ChecksumDb {
    pub name: String,
    repo: RepoName,
    source: Source,
    upstream: Upstream,
    verifier: Verifier,
    mode: NetworkMode,
    offline: bool,
    /// The longest one request to the database may take.
    deadline: Duration,
    /// The newest accepted tree head; the lock also makes accepting a new one one at a time.
    latest: Mutex<Option<Accepted>>,
    last_recheck: Mutex<Option<Instant>>,
    /// Verified records by (module, version), so the .mod and the .zip of one version cost
    /// one lookup.
    sums: Mutex<std::collections::HashMap<(String, String), RecordedSums>>,
}

impl std::fmt::Debug for ChecksumDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChecksumDb")
            .field("name", &self.name)
            .field("repo", &self.repo)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// How tiles are read for a check, and whether full tiles verified on the way are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Against an accepted tree head: stored tiles first, new full ones stored.
    FullTiles,
    /// A new head's own tiles, as the database serves them (does it serve tiles that match
    /// what it signed?): nothing from the store, nothing stored, since the head may be a fork.
    Nothing,
    /// A new head's tiles beside the stored ones (is the accepted tree its prefix?): stored
    /// tiles first, so a conflict with them shows; nothing stored yet.
    NothingYet,
}

/// The go.sum hashes a database records for one module version.
#[derive(Debug, Clone, Default)]
pub struct RecordedSums {
    /// The zip's `h1:`.
    pub zip: Option<String>,
    /// The go.mod's `h1:`.
    pub go_mod: Option<String>,
}

/// At most this many verified records are remembered (about 200 bytes each).
const SUMS_CACHED: usize = 10_000;

/// What a sumdb path asks for.
enum SumdbRequest {
    Supported,
    Latest,
    Lookup { module: String, version: String },
    Tile(Tile),
}

fn parse_request(rest: &str) -> Result<SumdbRequest, ProxyError> {
    let not_found = || ProxyError::NotFound(format!("not found: {rest:?} is not a checksum database path"));
    match rest {
        "supported" => return Ok(SumdbRequest::Supported),
        "latest" => return Ok(SumdbRequest::Latest),
        _ => {}
    }
    if let Some(lookup) = rest.strip_prefix("lookup/") {
        let (escaped_module, escaped_version) = lookup.rsplit_once('@').ok_or_else(not_found)?;
        let module = module_path::unescape_path(escaped_module).map_err(|_| not_found())?;
        let version = module_path::unescape_version(escaped_version).map_err(|_| not_found())?;
        module_path::check_path(&module).map_err(|_| not_found())?;
        if intact_go::module_path::canonical_version(&version).as_deref() != Some(version.as_str()) {
            return Err(not_found());
        }
        return Ok(SumdbRequest::Lookup { module, version });
    }
    if rest.starts_with("tile/") {
        let tile = Tile::parse_path(rest).map_err(|e| ProxyError::NotFound(format!("not found: {e}")))?;
        if tile.height != TILE_HEIGHT {
            return Err(ProxyError::NotFound(format!(
                "not found: {rest}: tiles of height {TILE_HEIGHT} only"
            )));
        }
        return Ok(SumdbRequest::Tile(tile));
    }
    Err(not_found())
}

/// What a sumdb request is answered with.
pub struct SumdbAnswer {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Immutable (a full tile): cacheable for ever.
    pub immutable: bool,
}

impl ChecksumDb {
    pub fn new(
        config: &ChecksumDbConfig,
        repo: RepoName,
        mode: NetworkMode,
        stall: Duration,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let verifier = Verifier::parse(&config.key)?;
        let base = config.url.trim_end_matches('/').to_owned();
        let source = Source::Http(base);
        let upstream = Upstream::new(
            vec![Entry {
                source: source.clone(),
                fallback_on_any_error: false,
            }],
            stall,
            None,
        )?;
        Ok(Self {
            name: config.name.clone(),
            repo,
            source,
            upstream,
            verifier,
            mode,
            offline: mode == NetworkMode::Offline,
            // Tree heads are accepted under a lock: a trickling database must not hold it for
            // a repo's whole fetch deadline (tiles and notes are a few KiB).
            deadline: deadline.min(MAX_REQUEST_TIME),
            latest: Mutex::new(None),
            last_recheck: Mutex::new(None),
            sums: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Answers `rest` (the path below `/sumdb/{name}/`).
    pub async fn serve(&self, store: &Store, rest: &str) -> Result<SumdbAnswer, ProxyError> {
        let text = |body: Vec<u8>| SumdbAnswer {
            body,
            content_type: "text/plain; charset=utf-8",
            immutable: false,
        };
        match parse_request(rest)? {
            SumdbRequest::Supported => Ok(text(Vec::new())),
            SumdbRequest::Latest => Ok(text(self.latest(store).await?.note.as_ref().clone())),
            SumdbRequest::Lookup { module, version } => Ok(text(self.lookup(store, &module, &version).await?)),
            SumdbRequest::Tile(tile) => {
                let body = self.tile(store, tile).await?;
                Ok(SumdbAnswer {
                    body,
                    content_type: if tile.level == -1 {
                        "text/plain; charset=utf-8"
                    } else {
                        "application/octet-stream"
                    },
                    immutable: tile.is_full(),
                })
            }
        }
    }

    fn offline_not_found(&self, what: &str) -> ProxyError {
        ProxyError::NotFound(format!(
            "not found: {what} of checksum database {} is not stored in repo {}, which is offline",
            self.name, self.repo
        ))
    }

    fn invalid(&self, why: impl std::fmt::Display) -> ProxyError {
        ProxyError::InvalidUpstream(format!(
            "checksum database {} ({}) {why}; refused, nothing served or stored",
            self.name, self.source
        ))
    }

    /// One request to the database, bounded in size and, as a whole, in time (tree heads are
    /// accepted under a lock, which a trickling database must not hold for long).
    async fn fetch(&self, path: &str, cap: u64) -> Result<Vec<u8>, ProxyError> {
        let rel = ProtocolPath::raw(path)?;
        tokio::time::timeout(self.deadline, self.upstream.get_bytes(&self.source, &rel, cap))
            .await
            .map_err(|_| ProxyError::Deadline {
                what: format!("{path} from checksum database {}", self.name),
                seconds: self.deadline.as_secs(),
            })?
    }

    fn latest_name(&self) -> Result<Name, ProxyError> {
        internal_name(&format!("@sumdb/{}/latest", self.name))
    }

    fn tile_name(&self, tile: &Tile) -> Result<Name, ProxyError> {
        internal_name(&format!("@sumdb/{}/{}", self.name, tile.path()))
    }

    /// The newest accepted tree head: in memory, else stored, else `None`.
    async fn accepted(&self, store: &Store, slot: &mut Option<Accepted>) -> Result<Option<Accepted>, ProxyError> {
        if slot.is_some() {
            return Ok(slot.clone());
        }
        let name = self.latest_name()?;
        let mut sizes: Vec<u64> = store
            .version_names(&self.repo, &name)
            .await?
            .iter()
            .filter_map(|v| v.as_str().parse::<u64>().ok())
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        // The newest stored head that checks out: one that does not (stored under another key
        // with the same name, say, or imported damaged) is passed over, not fatal.
        for size in sizes {
            match self.stored_head(store, &name, size).await {
                Ok(Some(accepted)) => {
                    *slot = Some(accepted.clone());
                    return Ok(Some(accepted));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(repo = %self.repo, sumdb = %self.name, size, error = %e, "a stored tree head does not check out; trying an older one");
                }
            }
        }
        Ok(None)
    }

    /// The stored tree head of `size`, its signature checked and its size the one it is
    /// stored under.
    async fn stored_head(&self, store: &Store, name: &Name, newest: u64) -> Result<Option<Accepted>, ProxyError> {
        let version = tree_version(newest)?;
        let Some(m) = store.has_version(&self.repo, name, &version).await? else {
            return Ok(None);
        };
        let file = m.file(NOTE_FILE).ok_or_else(|| {
            ProxyError::Internal(format!("stored tree head {newest} of {} lacks its note", self.name))
        })?;
        let note = layout::read_small(store, file).await?;
        let text = self
            .verifier
            .open(&note)
            .map_err(|e| ProxyError::Internal(format!("stored tree head of {}: {e}", self.name)))?;
        let tree = Tree::parse(text).map_err(|e| ProxyError::Internal(format!("stored tree head: {e}")))?;
        if tree.size != newest {
            return Err(ProxyError::Internal(format!(
                "stored tree head {newest} of {} is a tree of {} records",
                self.name, tree.size
            )));
        }
        let mut partial = PartialTiles::new();
        for f in m.files.iter().filter(|f| f.path.as_str() != NOTE_FILE) {
            if let Ok(tile) = Tile::parse_path(f.path.as_str()) {
                partial.insert(tile, layout::read_small(store, f).await?);
            }
        }
        let accepted = Accepted {
            tree,
            note: Arc::new(note),
            partial: Arc::new(partial),
            // Stored, not just checked: ask the database again on the next `latest`.
            checked_at: Instant::now() - LATEST_TTL,
        };
        Ok(Some(accepted))
    }

    /// `latest`: the accepted tree head while young, else the database's, once accepted.
    async fn latest(&self, store: &Store) -> Result<Accepted, ProxyError> {
        {
            let mut slot = self.latest.lock().await;
            if self.offline && slot.as_ref().is_some_and(|a| a.checked_at.elapsed() >= LATEST_TTL) {
                return self.reread_offline(store, &mut slot).await;
            }
            if let Some(a) = self.accepted(store, &mut slot).await?
                && (self.offline || a.checked_at.elapsed() < LATEST_TTL)
            {
                return Ok(a);
            }
        }
        if self.offline {
            return Err(self.offline_not_found("the latest tree head"));
        }
        match self.fetch("latest", MAX_NOTE).await {
            Ok(note) => self.accept(store, note).await,
            // The database is down: in fallback mode the accepted head still serves (what it
            // proves stays true); strict mode answers the outage.
            Err(e) if self.mode == NetworkMode::Fallback && e.is_upstream_failure() => {
                let mut slot = self.latest.lock().await;
                match self.accepted(store, &mut slot).await? {
                    Some(held) => {
                        tracing::debug!(sumdb = %self.name, error = %e, "checksum database unreachable; serving the accepted tree head");
                        Ok(held)
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Offline, the stored tree head is read again now and then: an import (`intact import`)
    /// may have brought a newer one, with the tiles and lookups that need it. Its signature is
    /// checked as on every read of the store; a head older than the one held is ignored.
    async fn reread_offline(&self, store: &Store, slot: &mut Option<Accepted>) -> Result<Accepted, ProxyError> {
        let held = slot.take();
        let stored = self.accepted(store, slot).await;
        let mut newest = match (stored, held) {
            (Ok(Some(stored)), Some(held)) if stored.tree.size < held.tree.size => held,
            (Ok(Some(stored)), _) => stored,
            (_, Some(held)) => held,
            (Err(e), None) => return Err(e),
            (Ok(None), None) => return Err(self.offline_not_found("the latest tree head")),
        };
        newest.checked_at = Instant::now();
        *slot = Some(newest.clone());
        Ok(newest)
    }

    /// Checks a signed tree head against the newest one accepted; returns the newest after it
    /// (this one, when it extends that; the one already held, when this is an older prefix).
    /// Nothing read on the way is stored before the head is found consistent.
    async fn accept(&self, store: &Store, note: Vec<u8>) -> Result<Accepted, ProxyError> {
        let tree = self.tree_of(&note)?;
        let mut slot = self.latest.lock().await;
        let current = self.accepted(store, &mut slot).await?;
        let known = current.as_ref().map(|c| c.partial.clone()).unwrap_or_default();
        if let Some(c) = &current
            && tree.size <= c.tree.size
        {
            // The same or an older head must be the accepted tree or a prefix of it: checked
            // against the accepted tree's own tiles (stored or held), not the database's.
            let consistent = if tree.size == c.tree.size {
                tree.hash == c.tree.hash
            } else {
                tree.size == 0 || {
                    let hashes = self
                        .verified_hashes(store, c.tree, &tree.hash_indexes(), &known, Keep::FullTiles)
                        .await?;
                    tlog::tree_hash(tree.size, &hashes) == tree.hash
                }
            };
            if !consistent {
                return Err(self.fork(c.tree.size, tree.size, "its hash differs from the accepted tree's"));
            }
            let mut held = c.clone();
            held.checked_at = Instant::now();
            *slot = Some(held.clone());
            return Ok(held);
        }
        // A newer head. First its own tiles must hash to it. Full tiles already stored are
        // the same in every honest tree, so they are read from the store; only when that
        // fails is it asked which is wrong: the database's tiles for what it signed
        // (tampering), or the stored ones (the head is a fork).
        let (plan, data) = match self
            .verified_tiles(store, tree, &[], &PartialTiles::new(), Keep::NothingYet)
            .await
        {
            Ok((plan, data, _)) => (plan, data),
            Err(ProxyError::InvalidUpstream(_)) => {
                self.verified_tiles(store, tree, &[], &PartialTiles::new(), Keep::Nothing)
                    .await?;
                let accepted = current.as_ref().map_or(0, |c| c.tree.size);
                return Err(self.fork(accepted, tree.size, "its tiles conflict with the accepted tree's"));
            }
            Err(e) => return Err(e),
        };
        // ...then the accepted tree must be its prefix. Tiles already verified for the accepted
        // tree take part: a conflict with them is a fork too.
        if let Some(c) = &current
            && c.tree.size > 0
        {
            let mut both = (*known).clone();
            both.extend(
                plan.tiles()
                    .iter()
                    .zip(&data)
                    .filter(|(t, _)| !t.is_full())
                    .map(|(t, d)| (*t, d.clone())),
            );
            let prefix = self
                .verified_hashes(store, tree, &c.tree.hash_indexes(), &both, Keep::NothingYet)
                .await;
            let consistent = match prefix {
                Ok(hashes) => tlog::tree_hash(c.tree.size, &hashes) == c.tree.hash,
                Err(ProxyError::InvalidUpstream(_)) => false,
                Err(e) => return Err(e),
            };
            if !consistent {
                return Err(self.fork(c.tree.size, tree.size, "the accepted tree is not its prefix"));
            }
        }
        for (tile, bytes) in plan.tiles().iter().zip(&data) {
            if tile.is_full() && self.stored_tile(store, tile).await?.is_none() {
                self.store_tile(store, tile, bytes).await?;
            }
        }
        let partial: PartialTiles = plan
            .tiles()
            .iter()
            .zip(data)
            .filter(|(t, _)| !t.is_full())
            .map(|(t, d)| (*t, d))
            .collect();
        let fresh = Accepted {
            tree,
            note: Arc::new(note),
            partial: Arc::new(partial),
            checked_at: Instant::now(),
        };
        self.store_tree(store, &fresh).await?;
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    fn fork(&self, accepted: u64, offered: u64, why: &str) -> ProxyError {
        tracing::error!(
            repo = %self.repo,
            sumdb = %self.name,
            accepted,
            offered,
            why,
            "checksum database served a tree head that is not consistent with the accepted one (a forked log); refused"
        );
        self.invalid(format!(
            "served a tree head of {offered} records that is not consistent with the accepted one of {accepted} records (a forked log: {why})"
        ))
    }

    /// Stores an accepted tree head with its partial tiles, and drops older ones (best effort:
    /// the newest wins anyway).
    async fn store_tree(&self, store: &Store, accepted: &Accepted) -> Result<(), ProxyError> {
        let name = self.latest_name()?;
        let version = tree_version(accepted.tree.size)?;
        let mut paths: Vec<(String, &Vec<u8>)> = accepted.partial.iter().map(|(t, d)| (t.path(), d)).collect();
        paths.sort();
        let mut files = vec![(
            NOTE_FILE.to_owned(),
            layout::pending_from_bytes(store, &accepted.note).await?,
        )];
        for (path, data) in paths {
            files.push((path, layout::pending_from_bytes(store, data).await?));
        }
        let metadata = serde_json::json!({"sumdb": self.name, "tree_size": accepted.tree.size});
        layout::commit_paths(store, &self.repo, &name, &version, files, metadata).await?;
        self.drop_superseded_heads(store, &name).await
    }

    /// Drops the tree heads superseded more than [`SUPERSEDED_HEAD_KEPT`] ago (superseded when
    /// the next larger one was stored). Kept that long, the head an export's snapshot holds is
    /// still there when the export reaches it, however busy the database.
    async fn drop_superseded_heads(&self, store: &Store, name: &Name) -> Result<(), ProxyError> {
        let mut heads: Vec<(u64, Version, intact_core::Timestamp)> = store
            .list_versions(&self.repo, name, None, 10_000)
            .await?
            .into_iter()
            .filter_map(|v| Some((v.version.as_str().parse().ok()?, v.version, v.created_at)))
            .collect();
        heads.sort_by_key(|(size, _, _)| *size);
        let cutoff = intact_core::Timestamp::from_system(std::time::SystemTime::now()).minus(SUPERSEDED_HEAD_KEPT);
        for pair in heads.windows(2) {
            let (superseded, superseded_at) = (&pair[0].1, pair[1].2);
            if superseded_at < cutoff
                && let Err(e) = store
                    .delete_version(&self.repo, name, superseded, "superseded by a newer tree head")
                    .await
            {
                tracing::debug!(error = %e, "an older tree head could not be dropped");
            }
        }
        Ok(())
    }

    /// The tiles of `plan`: stored ones from the store, the rest from the database.
    /// The tiles asked for: from the store (`stored_first`), from `known`, else from the
    /// database, all at once (a check needs a handful, and each is a round trip); `true`
    /// beside the ones not fetched now.
    async fn read_tiles(
        &self,
        store: &Store,
        tiles: &[Tile],
        known: &PartialTiles,
        stored_first: bool,
    ) -> Result<Vec<(Vec<u8>, bool)>, ProxyError> {
        let reads = tiles.iter().map(|tile| async move {
            if stored_first && let Some(bytes) = self.stored_tile(store, tile).await? {
                return Ok((bytes, true));
            }
            if let Some(bytes) = known.get(tile) {
                return Ok((bytes.clone(), true));
            }
            if self.offline {
                return Err(self.offline_not_found(&tile.path()));
            }
            let cap = if tile.level == -1 {
                MAX_DATA_TILE
            } else {
                tile.hash_bytes() as u64
            };
            // A tile its own tree head promises is never "not here": a database that lacks
            // one is at fault (and a module's lookup must not read as "no record").
            let bytes = self.fetch(&tile.path(), cap).await.map_err(|e| {
                if e.is_not_found() {
                    self.invalid(format!(
                        "does not have {}, which its tree head covers: {e}",
                        tile.path()
                    ))
                } else {
                    e
                }
            })?;
            Ok((bytes, false))
        });
        futures::future::try_join_all(reads).await
    }

    async fn stored_tile(&self, store: &Store, tile: &Tile) -> Result<Option<Vec<u8>>, ProxyError> {
        if !tile.is_full() {
            return Ok(None);
        }
        let Some(m) = store
            .has_version(&self.repo, &self.tile_name(tile)?, &tile_version()?)
            .await?
        else {
            return Ok(None);
        };
        let Some(file) = m.file(TILE_FILE) else {
            return Ok(None);
        };
        Ok(Some(layout::read_small(store, file).await?))
    }

    async fn store_tile(&self, store: &Store, tile: &Tile, bytes: &[u8]) -> Result<(), ProxyError> {
        let files = vec![(TILE_FILE, layout::pending_from_bytes(store, bytes).await?)];
        let metadata = serde_json::json!({"sumdb": self.name, "tile": tile.path()});
        layout::commit(
            store,
            &self.repo,
            &self.tile_name(tile)?,
            &tile_version()?,
            files,
            metadata,
        )
        .await?;
        Ok(())
    }

    /// Reads the tiles `tree` needs for `indexes`, verifies them against it, stores the full
    /// ones not stored yet (as `keep` says), and returns the plan, the tiles' bytes and the
    /// hashes at `indexes`.
    async fn verified_tiles(
        &self,
        store: &Store,
        tree: Tree,
        indexes: &[u64],
        known: &PartialTiles,
        keep: Keep,
    ) -> Result<(TilePlan, Vec<Vec<u8>>, Vec<LogHash>), ProxyError> {
        let plan = TilePlan::new(tree, TILE_HEIGHT, indexes).map_err(|e| self.invalid(e))?;
        let read = self
            .read_tiles(store, plan.tiles(), known, keep != Keep::Nothing)
            .await?;
        let bytes: Vec<&[u8]> = read.iter().map(|(b, _)| b.as_slice()).collect();
        let hashes = plan
            .read_hashes(&bytes)
            .map_err(|e| self.invalid(format!("served tiles that do not verify: {e}")))?;
        if keep == Keep::FullTiles {
            for (tile, (data, stored)) in plan.tiles().iter().zip(&read) {
                if tile.is_full() && !stored {
                    self.store_tile(store, tile, data).await?;
                }
            }
        }
        let data = read.into_iter().map(|(b, _)| b).collect();
        Ok((plan, data, hashes))
    }

    async fn verified_hashes(
        &self,
        store: &Store,
        tree: Tree,
        indexes: &[u64],
        known: &PartialTiles,
        keep: Keep,
    ) -> Result<Vec<LogHash>, ProxyError> {
        let (_, _, hashes) = self.verified_tiles(store, tree, indexes, known, keep).await?;
        Ok(hashes)
    }

    /// Whether a tile beyond the accepted tree may ask the database for a newer head now: at
    /// most once per [`LATEST_RECHECK`], whatever became of the last attempt.
    async fn may_recheck(&self) -> bool {
        let mut last = self.last_recheck.lock().await;
        if last.is_some_and(|at| at.elapsed() < LATEST_RECHECK) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// A lookup answer: the one stored for it, else the database's, passed on once its tree
    /// head is accepted and its record verified, and stored (a record never changes, and an
    /// older tree head in a lookup is fine for clients: they check it against the newest).
    /// So a repo that is offline, or whose database is down, answers every lookup it made.
    async fn lookup(&self, store: &Store, module: &str, version: &str) -> Result<Vec<u8>, ProxyError> {
        let slot = self.lookup_slot(module, version);
        if let Some((name, v)) = &slot {
            match self.stored_lookup(store, name, v, module, version).await {
                Ok(Some(body)) => return Ok(body),
                Ok(None) => {}
                // A stored answer that lost its bytes or no longer verifies (the database's key
                // changed under the same name) is dropped and asked for again, as any damaged
                // cached copy; offline, there is nothing to ask.
                Err(e @ (ProxyError::LostBytes(_) | ProxyError::Internal(_))) if !self.offline => {
                    tracing::warn!(repo = %self.repo, sumdb = %self.name, %module, %version, error = %e, "dropping a stored checksum-database lookup; asking the database again");
                    store
                        .delete_version(&self.repo, name, v, "a stored lookup was damaged or did not verify")
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        if self.offline {
            return Err(self.offline_not_found(&format!("the lookup of {module}@{version}")));
        }
        let escaped = module_path::escape_path(module).map_err(|e| ProxyError::NotFound(format!("not found: {e}")))?;
        let escaped_version =
            module_path::escape_version(version).map_err(|e| ProxyError::NotFound(format!("not found: {e}")))?;
        let body = self
            .fetch(&format!("lookup/{escaped}@{escaped_version}"), MAX_LOOKUP)
            .await?;
        let (id, text, note) = tlog::parse_record(&body).map_err(|e| self.invalid(e))?;
        let note_tree = self.tree_of(note)?;
        let accepted = self.accept(store, note.to_vec()).await?;
        if id >= note_tree.size {
            return Err(self.invalid(format!(
                "answered record {id} with a tree of {} records",
                note_tree.size
            )));
        }
        // Against the newest accepted tree (it holds the lookup's tree as a prefix).
        let hashes = self
            .verified_hashes(
                store,
                accepted.tree,
                &[tlog::record_index(id)],
                &accepted.partial,
                Keep::FullTiles,
            )
            .await?;
        if hashes.first() != Some(&tlog::record_hash(text)) {
            return Err(self.invalid(format!(
                "answered the lookup of {module}@{version} with record {id}, which is not in its log"
            )));
        }
        self.check_record_names(text, module, version)?;
        if let Some((name, v)) = slot {
            let files = vec![(LOOKUP_FILE, layout::pending_from_bytes(store, &body).await?)];
            let metadata = serde_json::json!({"sumdb": self.name, "lookup": format!("{module}@{version}")});
            // Best effort: the answer is verified whether or not it could be kept.
            if let Err(e) = layout::commit(store, &self.repo, &name, &v, files, metadata).await {
                tracing::warn!(repo = %self.repo, sumdb = %self.name, %module, %version, error = %e, "could not store a checksum-database lookup");
            }
        }
        Ok(body)
    }

    /// Where the lookup of `module@version` is stored: `@sumdb/{db}/lookup/{module}`, version
    /// `version` (`None` for the rare module path or version intact cannot name).
    fn lookup_slot(&self, module: &str, version: &str) -> Option<(Name, Version)> {
        let name = Name::parse_internal(&format!("@sumdb/{}/lookup/{module}", self.name)).ok()?;
        Some((name, Version::parse(version).ok()?))
    }

    /// A stored lookup, re-checked as far as it can be without the database: its tree head's
    /// signature, and that its record is this module version's (clients prove the record
    /// against the tree with tiles themselves, and the full tiles are stored).
    async fn stored_lookup(
        &self,
        store: &Store,
        name: &Name,
        v: &Version,
        module: &str,
        version: &str,
    ) -> Result<Option<Vec<u8>>, ProxyError> {
        let Some(m) = store.has_version(&self.repo, name, v).await? else {
            return Ok(None);
        };
        let Some(file) = m.file(LOOKUP_FILE) else {
            return Ok(None);
        };
        let body = layout::read_small(store, file).await?;
        let (_, text, note) = tlog::parse_record(&body)
            .map_err(|e| ProxyError::Internal(format!("stored lookup of {module}@{version}: {e}")))?;
        self.tree_of(note)
            .and_then(|_| self.check_record_names(text, module, version))
            .map_err(|e| ProxyError::Internal(format!("stored lookup of {module}@{version} does not verify: {e}")))?;
        Ok(Some(body))
    }

    /// Every line of a lookup's record must be about `module@version`.
    fn check_record_names(&self, text: &[u8], module: &str, version: &str) -> Result<(), ProxyError> {
        let text = std::str::from_utf8(text).map_err(|e| self.invalid(e))?;
        let zip_line = format!("{module} {version} ");
        let mod_line = format!("{module} {version}/go.mod ");
        if !text
            .lines()
            .all(|l| l.starts_with(&zip_line) || l.starts_with(&mod_line))
        {
            return Err(self.invalid(format!(
                "answered the lookup of {module}@{version} with the record of another module version"
            )));
        }
        Ok(())
    }

    /// The go.sum hashes the database records for `module@version`, from a verified lookup
    /// (remembered: a record never changes once it verified).
    pub async fn module_hashes(&self, store: &Store, module: &str, version: &str) -> Result<RecordedSums, ProxyError> {
        let key = (module.to_owned(), version.to_owned());
        if let Some(sums) = self.sums.lock().await.get(&key) {
            return Ok(sums.clone());
        }
        let body = self.lookup(store, module, version).await?;
        let (_, text, _) = tlog::parse_record(&body).map_err(|e| self.invalid(e))?;
        let text = std::str::from_utf8(text).map_err(|e| self.invalid(e))?;
        let mut sums = RecordedSums::default();
        for line in text.lines() {
            let mut fields = line.split(' ');
            let (Some(_), Some(v), Some(h1), None) = (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if v == version {
                sums.zip.get_or_insert_with(|| h1.to_owned());
            } else if v.strip_suffix("/go.mod") == Some(version) {
                sums.go_mod.get_or_insert_with(|| h1.to_owned());
            }
        }
        let mut cache = self.sums.lock().await;
        if cache.len() >= SUMS_CACHED {
            cache.clear();
        }
        cache.insert(key, sums.clone());
        Ok(sums)
    }

    fn tree_of(&self, note: &[u8]) -> Result<Tree, ProxyError> {
        let text = self
            .verifier
            .open(note)
            .map_err(|e| self.invalid(format!("sent a tree head that does not verify: {e}")))?;
        Tree::parse(text).map_err(|e| self.invalid(e))
    }

    /// A tile, verified against the newest accepted tree head (asking for a newer one once
    /// when the tile lies beyond it).
    async fn tile(&self, store: &Store, tile: Tile) -> Result<Vec<u8>, ProxyError> {
        if let Some(bytes) = self.stored_tile(store, &tile).await? {
            return Ok(bytes);
        }
        let mut accepted = self.latest(store).await?;
        let (first, end) = tile_records(&tile).unwrap_or((u64::MAX, u64::MAX));
        // A tile beyond the accepted tree: ask for a newer head, at most once a second
        // (requests for tiles no tree holds must not each cost a request upstream).
        if end > accepted.tree.size && !self.offline && self.may_recheck().await {
            let note = self.fetch("latest", MAX_NOTE).await?;
            accepted = self.accept(store, note).await?;
        }
        let tree = accepted.tree;
        if end > tree.size {
            return Err(ProxyError::NotFound(format!(
                "not found: {} lies beyond the newest tree head of {} ({} records)",
                tile.path(),
                self.name,
                tree.size
            )));
        }
        if tile.level == -1 {
            return self.data_tile(store, &accepted, tile, first).await;
        }
        // The tile's last hash: the plan then holds this tile (the tree's copy of it, which
        // may be wider when the tile asked for is partial) and what it hangs from.
        let level = tile.level as u32 * TILE_HEIGHT;
        let last = tlog::stored_hash_index(level, (tile.n << TILE_HEIGHT) + u64::from(tile.width) - 1);
        let (plan, data, _) = self
            .verified_tiles(store, tree, &[last], &accepted.partial, Keep::FullTiles)
            .await?;
        let held = plan
            .tiles()
            .iter()
            .position(|t| t.level == tile.level && t.n == tile.n && t.width >= tile.width)
            .ok_or_else(|| ProxyError::Internal(format!("tile plan lost {}", tile.path())))?;
        Ok(data[held][..tile.hash_bytes()].to_vec())
    }

    /// A data tile: each record it holds must hash to the leaf the hash tiles hold for it.
    async fn data_tile(
        &self,
        store: &Store,
        accepted: &Accepted,
        tile: Tile,
        first: u64,
    ) -> Result<Vec<u8>, ProxyError> {
        if self.offline {
            return Err(self.offline_not_found(&tile.path()));
        }
        let indexes: Vec<u64> = (first..first + u64::from(tile.width)).map(tlog::record_index).collect();
        let hashes = self
            .verified_hashes(store, accepted.tree, &indexes, &accepted.partial, Keep::FullTiles)
            .await?;
        let body = self.fetch(&tile.path(), MAX_DATA_TILE).await?;
        let records = tlog::split_data_tile(&body).map_err(|e| self.invalid(e))?;
        if records.len() != hashes.len() {
            return Err(self.invalid(format!(
                "served {} with {} records, not {}",
                tile.path(),
                records.len(),
                hashes.len()
            )));
        }
        for (i, ((id, text), want)) in records.iter().zip(&hashes).enumerate() {
            let id_ok = id.is_none_or(|id| id == first + i as u64);
            if !id_ok || tlog::record_hash(text) != *want {
                return Err(self.invalid(format!("served {} with a record that is not in its log", tile.path())));
            }
        }
        if tile.is_full() {
            self.store_tile(store, &tile, &body).await?;
        }
        Ok(body)
    }
}

/// The records a tile covers: `first..end` (for a hash tile, the records under its hashes).
fn tile_records(tile: &Tile) -> Option<(u64, u64)> {
    // In u128: a path may name a tile of a level and number no log reaches (level 63 of
    // height 8 is 2^504 records); such a tile is simply beyond every tree.
    let level = if tile.level < 0 {
        0
    } else {
        tile.level as u32 * TILE_HEIGHT
    };
    if level >= 64 {
        return None;
    }
    let start = u128::from(tile.n) << TILE_HEIGHT;
    let first = start << level;
    let end = (start + u128::from(tile.width)) << level;
    Some((u64::try_from(first).ok()?, u64::try_from(end).ok()?))
}

fn internal_name(s: &str) -> Result<Name, ProxyError> {
    Name::parse_internal(s).map_err(|e| ProxyError::Internal(format!("{s}: {e}")))
}

fn tree_version(size: u64) -> Result<Version, ProxyError> {
    Version::parse(&size.to_string()).map_err(|e| ProxyError::Internal(e.to_string()))
}

/// Tiles never change: each is stored as the one version `1` of its name.
fn tile_version() -> Result<Version, ProxyError> {
    Version::parse("1").map_err(|e| ProxyError::Internal(e.to_string()))
}
