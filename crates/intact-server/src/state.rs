//! The state every handler shares: the store, the configuration, and each front-end's own
//! state (Go proxy caches and single-flight, staging jobs).

use std::sync::Arc;

use intact_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, RepoConfig};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub go: Arc<crate::go::GoState>,
    pub staging: Arc<crate::staging::StagingState>,
    /// `[limits]` and the rate and upload counters that enforce them.
    pub limits: Arc<crate::limits::Limits>,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: Arc<Store>) -> anyhow::Result<Self> {
        let go = Arc::new(crate::go::GoState::new(&config)?);
        let staging = Arc::new(crate::staging::StagingState::new(&config)?);
        let limits = crate::limits::Limits::new(config.limits.resolve()?);
        Ok(Self {
            config,
            store,
            go,
            staging,
            limits,
        })
    }

    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.config.repo(name)
    }

    /// Starts the front-ends' background tasks (if any).
    pub fn start_background(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        tasks.extend(crate::staging::start_background(self, shutdown));
        tasks
    }
}
