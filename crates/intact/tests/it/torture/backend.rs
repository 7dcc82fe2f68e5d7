//! Where the server under torture keeps its catalog and blobs, and how the checker reads them
//! once the server is dead: the embedded default (`catalog.db` and blob files in the data
//! dir), or the scale-out engines (a fresh PostgreSQL database and a key prefix in a real
//! Garage bucket).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use futures::TryStreamExt;
use intact_core::Digest;
use intact_store::{BlobStore, BlobTestHooks, S3BlobStore, S3Settings};
use intact_testkit::{TestDatabase, shared_garage};

use super::catalog::Source;

pub enum Backend {
    Embedded,
    Shared(Box<Shared>),
}

/// PostgreSQL + S3, as replicas run.
pub struct Shared {
    db: TestDatabase,
    /// The server's bucket prefix, opened by the checker with the same settings.
    blobs: S3BlobStore,
    /// The same, but sweeping every pending object whatever its age (the server keeps young
    /// ones, which may belong to another replica; with the server dead none can).
    sweeper: S3BlobStore,
    blobs_url: String,
    endpoint: String,
    region: String,
    env: Vec<(String, String)>,
}

impl Backend {
    /// A fresh database and a fresh key prefix in the test binary's Garage.
    pub fn postgres_and_s3(rt: &tokio::runtime::Runtime, test: &str) -> Backend {
        let garage = shared_garage();
        let db = rt.block_on(TestDatabase::create());
        let blobs_url = format!("s3://{}/{}", garage.bucket, garage.prefix(test));
        let mut settings = S3Settings::from_url(&blobs_url).expect("s3 url");
        settings.endpoint = Some(garage.endpoint.clone());
        settings.region = Some(garage.region.clone());
        settings.credentials = Some((garage.access_key_id.clone(), garage.secret_access_key.clone()));
        let blobs = rt.block_on(S3BlobStore::open(&settings)).expect("open the bucket");
        settings.pending_min_age = Duration::ZERO;
        let sweeper = rt.block_on(S3BlobStore::open(&settings)).expect("open the bucket");
        Backend::Shared(Box::new(Shared {
            db,
            blobs,
            sweeper,
            blobs_url,
            endpoint: garage.endpoint.clone(),
            region: garage.region.clone(),
            env: vec![
                ("AWS_ACCESS_KEY_ID".to_owned(), garage.access_key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".to_owned(), garage.secret_access_key.clone()),
            ],
        }))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "sqlite+files",
            Backend::Shared(_) => "postgres+s3",
        }
    }

    /// The config sections that choose the engines (none for the embedded default).
    pub fn config(&self) -> String {
        match self {
            Backend::Embedded => String::new(),
            Backend::Shared(s) => format!(
                "[catalog]\nurl = \"{}\"\n\n[blobs]\nurl = \"{}\"\nendpoint = \"{}\"\nregion = \"{}\"\n",
                s.db.url, s.blobs_url, s.endpoint, s.region
            ),
        }
    }

    /// Environment the server needs (the S3 credentials).
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Embedded => Vec::new(),
            Backend::Shared(s) => s.env.clone(),
        }
    }

    pub fn catalog(&self, data: &Path) -> Source {
        match self {
            Backend::Embedded => Source::Embedded(data.to_owned()),
            Backend::Shared(s) => Source::Postgres(s.db.url.clone()),
        }
    }

    /// The stored size of each digest (`None`: not stored).
    pub async fn sizes(&self, data: &Path, digests: &BTreeSet<String>) -> BTreeMap<String, Option<u64>> {
        match self {
            Backend::Embedded => digests
                .iter()
                .map(|sha| {
                    let path = data.join("blobs/sha256").join(&sha[..2]).join(sha);
                    (sha.clone(), std::fs::metadata(&path).ok().map(|m| m.len()))
                })
                .collect(),
            Backend::Shared(s) => {
                let parsed: Vec<Digest> = digests
                    .iter()
                    .map(|d| Digest::parse(d).expect("catalog digest"))
                    .collect();
                let found = s.blobs.sizes(&parsed).await.expect("sizes from the bucket");
                parsed.iter().map(|d| (d.to_string(), found.get(d).copied())).collect()
            }
        }
    }

    /// Every stored blob, by digest.
    pub async fn stored(&self, data: &Path) -> BTreeSet<String> {
        match self {
            Backend::Embedded => crate::harness::blob_files(data),
            Backend::Shared(s) => s
                .blobs
                .list(None)
                .map_ok(|d| d.to_string())
                .try_collect()
                .await
                .expect("list the bucket"),
        }
    }

    /// Pending uploads the kills left in the bucket, swept (`None` on the embedded engine,
    /// whose start-up removes its own). The server sweeps them only once they are older than
    /// its floor (they might be another replica's upload); with the server dead, none is.
    pub async fn sweep_pending_left_by_kills(&self) -> Option<usize> {
        match self {
            Backend::Embedded => None,
            Backend::Shared(s) => {
                let left = s.blobs.pending_count().await.expect("list pending");
                s.sweeper.sweep_pending(Duration::ZERO).await.expect("sweep pending");
                let after = s.blobs.pending_count().await.expect("list pending");
                assert_eq!(after, 0, "pending objects survived a sweep");
                Some(left)
            }
        }
    }
}
