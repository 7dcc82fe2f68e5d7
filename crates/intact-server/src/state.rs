//! The state every handler shares: the store, the configuration, and each front-end's own
//! state (Go proxy caches and single-flight, staging jobs).

use std::sync::Arc;

use intact_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, RepoConfig};

/// What every request handler shares. One `Arc`: each middleware layer and each handler
/// takes its own clone of the state per request, so a clone must cost one reference count,
/// not one per part (seven, with as many decrements on drop, showed in profiles of small
/// GETs).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub go: Arc<crate::go::GoState>,
    pub staging: Arc<crate::staging::StagingState>,
    /// Whether access control is on.
    pub auth: Arc<crate::http::auth::Gate>,
    /// Tokens this process remembers (see `http::token_cache`).
    pub tokens: Arc<crate::http::token_cache::TokenCache>,
    /// `[limits]` and the rate and upload counters that enforce them.
    pub limits: Arc<crate::limits::Limits>,
    /// Answers to warm reads of small hosted files, served before routing.
    pub prepared: crate::api::prepared::PreparedFiles,
    /// `[import] allowed_roots`, canonical (symlinks and `..` resolved): import sources are
    /// checked against these. Empty: import by path is off.
    pub import_roots: Vec<std::path::PathBuf>,
    /// Where the server keeps its own files (the data dir, a local blob cache), canonical:
    /// never an import source, even under an allowed root (moving or freezing the catalog or
    /// a stored blob would break the store).
    pub import_excluded: Vec<std::path::PathBuf>,
    /// The runtime this state was made on (the process's own, when there is one): where work
    /// that must outlive the request that started it runs. A request's own runtime is its
    /// serving thread's, which ends with serving (`listener::serve_on_threads`), taking
    /// whatever was spawned there with it.
    pub background: Option<tokio::runtime::Handle>,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: Arc<Store>) -> anyhow::Result<Self> {
        // Before the first request: request metrics keep the handles they first get.
        crate::observe::metrics::recorder();
        let go = Arc::new(crate::go::GoState::new(&config)?);
        let staging = Arc::new(crate::staging::StagingState::new(&config)?);
        let auth = Arc::new(crate::http::auth::Gate::new(config.auth.required));
        let limits = crate::limits::Limits::new(config.limits.resolve()?);
        // As much again as the small-file cache: an answer shares its body with that cache,
        // so this mostly bounds the paths and headers.
        let prepared = crate::api::prepared::PreparedFiles::new(config.store.small_file_cache_bytes);
        let import_roots = config.import.canonical_roots()?;
        let import_excluded = match import_roots.is_empty() {
            true => Vec::new(),
            false => config.import_excluded()?,
        };
        Ok(Self(Arc::new(Shared {
            prepared,
            import_roots,
            import_excluded,
            auth,
            tokens: Arc::default(),
            config,
            store,
            go,
            staging,
            limits,
            background: tokio::runtime::Handle::try_current().ok(),
        })))
    }
}

impl Shared {
    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.config.repo(name)
    }

    /// The repos that answer for `repo`, in the order they are tried: a group's members, or
    /// the repo itself. Every front-end resolves groups here (a read through a group needs
    /// access to the group only: its members are how it answers, not who asks).
    pub fn members<'a>(&'a self, repo: &'a RepoConfig) -> Vec<&'a RepoConfig> {
        match repo.kind {
            crate::config::RepoKind::Group => repo.members.iter().filter_map(|m| self.repo(m.as_str())).collect(),
            _ => vec![repo],
        }
    }
}

impl AppState {
    /// Starts the front-ends' background tasks (if any).
    pub fn start_background(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(crate::observe::metrics::run_upkeep(shutdown.clone())),
            tokio::spawn(crate::hooks::deliver::run(self.clone(), shutdown.clone())),
        ];
        tasks.extend(crate::staging::start_background(self, shutdown));
        tasks
    }
}
