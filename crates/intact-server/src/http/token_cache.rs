//! What this process remembers of tokens, so that a request presenting a token costs no
//! catalog round trip, while a revocation made anywhere (another replica, `intact token
//! revoke` on the host) is still in force by the time the revoke answers.
//!
//! The catalog's token census (how many tokens, how many revoked) changes with every create
//! and revocation. A background task reads it every [`CENSUS_POLL`]; when it changes,
//! everything remembered is forgotten. What is remembered is believed only while the last
//! census read began less than [`REMEMBERED_FOR`] ago, and a revocation waits
//! [`REVOCATION_SETTLES`] (longer) before it answers. So once a revoke has answered, every
//! server has either read a census taken after the revocation (and forgotten the token) or
//! stopped believing its memory (and asks the catalog at each request).
//!
//! A lookup that raced a revocation must not put the revoked token back: each entry carries
//! the generation current when its lookup began, and only entries of the current generation
//! are believed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use intact_store::tokens::{CENSUS_POLL, REMEMBERED_FOR, TokenCensus, TokenRecord};
use tokio::sync::watch;

/// Tokens remembered at most (each a few hundred bytes).
const ENTRIES: usize = 10_000;

/// No census read yet.
const NEVER: u64 = u64::MAX;

#[derive(Clone)]
struct Remembered {
    record: Arc<TokenRecord>,
    generation: u64,
}

pub struct TokenCache {
    /// By the sha256 of the secret (hex), as the catalog keys them.
    entries: quick_cache::sync::Cache<String, Remembered>,
    generation: AtomicU64,
    census: std::sync::Mutex<Option<TokenCensus>>,
    /// When (ms after `epoch`) the last successful census read began.
    fresh_from_ms: AtomicU64,
    epoch: Instant,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(ENTRIES),
            generation: AtomicU64::new(0),
            census: std::sync::Mutex::new(None),
            fresh_from_ms: AtomicU64::new(NEVER),
            epoch: Instant::now(),
        }
    }
}

impl TokenCache {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn believed(&self) -> bool {
        let fresh = self.fresh_from_ms.load(Ordering::Acquire);
        fresh != NEVER && self.now_ms().saturating_sub(fresh) < REMEMBERED_FOR.as_millis() as u64
    }

    /// The token whose secret hashes to `secret_sha256`, when remembered and still believed
    /// (revoked and expired ones are never remembered; expiry is for the caller to check).
    pub fn get(&self, secret_sha256: &str) -> Option<Arc<TokenRecord>> {
        if !self.believed() {
            return None;
        }
        let found = self.entries.get(secret_sha256)?;
        (found.generation == self.generation.load(Ordering::Acquire)).then_some(found.record)
    }

    /// The generation to pass to [`TokenCache::remember`]: read it before the lookup.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a usable token found by a lookup that began at `generation`.
    pub fn remember(&self, secret_sha256: String, record: Arc<TokenRecord>, generation: u64) {
        if generation == self.generation() {
            self.entries.insert(secret_sha256, Remembered { record, generation });
        }
    }

    /// Forgets every token (one was revoked here, or the census changed).
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Reads the census once: forgets everything when it changed (or is read for the first
    /// time), and believes the memory for [`REMEMBERED_FOR`] from when the read began.
    pub async fn refresh(&self, catalog: &dyn intact_store::Catalog) -> intact_store::Result<TokenCensus> {
        let began = self.now_ms();
        let census = catalog.token_census().await?;
        let changed = {
            let mut last = self.census.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = *last != Some(census);
            *last = Some(census);
            changed
        };
        if changed {
            self.forget_all();
        }
        self.fresh_from_ms.store(began, Ordering::Release);
        Ok(census)
    }

    /// Reads the census every [`CENSUS_POLL`] until `shutdown`; turns access control on
    /// once a token exists.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<intact_store::Store>,
        gate: Arc<super::auth::Gate>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failing = false;
        loop {
            match self.refresh(store.catalog().as_ref()).await {
                Ok(census) => {
                    if census.tokens > 0 {
                        gate.switch_on();
                    }
                    if failing {
                        tracing::info!("reading the token census works again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "reading the token census failed: every request asks the catalog until it works");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(CENSUS_POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intact_store::Catalog;
    use intact_store::tokens::{Access, NewToken, RepoPattern, Scope};

    async fn catalog() -> (tempfile::TempDir, intact_store::SqliteCatalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = intact_store::SqliteCatalog::open(&dir.path().join("c.db"), Arc::new(intact_store::SystemClock))
            .await
            .expect("catalog");
        (dir, cat)
    }

    fn new_token(name: &str, secret: &str) -> NewToken {
        NewToken {
            name: name.into(),
            secret_sha256: intact_store::tokens::secret_hash(secret),
            scopes: vec![Scope {
                repo: RepoPattern::Any,
                access: Access::Read,
            }],
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn nothing_is_believed_before_a_census_or_across_a_change() {
        let (_dir, cat) = catalog().await;
        let record = Arc::new(cat.create_token(&new_token("a", "s1")).await.expect("create"));
        let cache = TokenCache::default();
        let hash = intact_store::tokens::secret_hash("s1");
        cache.remember(hash.clone(), record.clone(), cache.generation());
        assert!(cache.get(&hash).is_none(), "no census read yet: nothing believed");

        cache.refresh(&cat).await.expect("census");
        assert!(
            cache.get(&hash).is_none(),
            "the first census forgets what came before it"
        );
        let g = cache.generation();
        cache.remember(hash.clone(), record.clone(), g);
        assert!(cache.get(&hash).is_some());

        // A lookup that began before a revocation finishes after the census saw it: its
        // answer is not kept.
        let stale_generation = cache.generation();
        cat.revoke_token("a").await.expect("revoke");
        cache.refresh(&cat).await.expect("census");
        assert!(cache.get(&hash).is_none(), "a changed census forgets every token");
        cache.remember(hash.clone(), record, stale_generation);
        assert!(
            cache.get(&hash).is_none(),
            "a lookup from before the change is not kept"
        );
    }

    #[tokio::test]
    async fn memory_is_not_believed_once_the_census_is_old() {
        let (_dir, cat) = catalog().await;
        let record = Arc::new(cat.create_token(&new_token("a", "s1")).await.expect("create"));
        let cache = TokenCache::default();
        let hash = intact_store::tokens::secret_hash("s1");
        cache.refresh(&cat).await.expect("census");
        cache.remember(hash.clone(), record, cache.generation());
        assert!(cache.get(&hash).is_some());
        tokio::time::sleep(REMEMBERED_FOR + std::time::Duration::from_millis(20)).await;
        assert!(
            cache.get(&hash).is_none(),
            "no census read for too long: ask the catalog"
        );
    }
}
