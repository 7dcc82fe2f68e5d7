//! Which backends a store runs on, and opening them: the one place a deployment's choice
//! (embedded SQLite or a shared PostgreSQL catalog) becomes a [`Store`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    BlobStore, Catalog, Clock, Error, FsBlobStore, PostgresCatalog, Result, SqliteCatalog, Store, StoreConfig,
    SystemClock,
};

/// Where blobs live (the server's `[blobs]` section).
#[derive(Debug, Clone, Default)]
pub enum BlobSettings {
    /// Plain files under the data dir (the embedded default).
    #[default]
    Files,
    /// An S3-compatible bucket, shared by every replica, optionally with a local cache of
    /// this replica's own.
    S3(crate::S3Settings, Option<LocalCacheSettings>),
}

/// A per-replica local cache of remote blobs.
#[derive(Debug, Clone)]
pub struct LocalCacheSettings {
    pub dir: PathBuf,
    /// At most this many bytes are cached; the least recently read go first.
    pub max_size: u64,
}

impl BlobSettings {
    /// Opens the blob store these settings name, for the data dir `data_dir`.
    pub async fn open(&self, data_dir: &Path) -> Result<Arc<dyn BlobStore>> {
        Ok(match self {
            Self::Files => Arc::new(FsBlobStore::open(data_dir).await?),
            Self::S3(s3, None) => Arc::new(crate::S3BlobStore::open(s3).await?),
            Self::S3(s3, Some(cache)) => {
                let remote = Arc::new(crate::S3BlobStore::open(s3).await?);
                Arc::new(crate::CachedBlobStore::open(remote, &cache.dir, cache.max_size).await?)
            }
        })
    }
}

/// Where the catalog lives.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum CatalogChoice {
    /// SQLite in the data dir (`catalog.db`): one process owns the data dir and is the only
    /// writer (the default).
    #[default]
    Embedded,
    /// A PostgreSQL database that any number of replicas share.
    Postgres { url: String },
}

impl CatalogChoice {
    /// The catalog a URL names: `postgres://` or `postgresql://` (no URL: embedded).
    pub fn from_url(url: Option<&str>) -> std::result::Result<Self, String> {
        match url {
            None => Ok(Self::Embedded),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Self::Postgres { url: u.to_owned() })
            }
            Some(u) => Err(format!(
                "{:?} is not a catalog URL intact knows (postgres://user@host/database; leave it out for the embedded SQLite catalog)",
                redact(u)
            )),
        }
    }
}

/// `url` with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &authority[..colon],
                &url[scheme_end + at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl std::fmt::Debug for CatalogChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Postgres { url } => f.debug_struct("Postgres").field("url", &redact(url)).finish(),
        }
    }
}

/// Whether an intact process holds `dir` now (its data-dir lock is taken). Tells a dead
/// process's leftover lease from a live one, for status reports read beside the server.
pub fn data_dir_in_use(dir: &Path) -> Result<bool> {
    match lock_data_dir(dir) {
        // Dropping the file lets the lock go at once.
        Ok(_file) => Ok(false),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
        Err(e) => Err(e),
    }
}

/// Takes an exclusive lock on `dir/lock` so two processes never own one data dir.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // `intact gc --status --data-dir` takes the lock for an instant to tell a dead server
    // from a live one: a server starting at that instant waits it out instead of failing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut outcome = file.try_lock();
    while matches!(outcome, Err(std::fs::TryLockError::WouldBlock)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        outcome = file.try_lock();
    }
    match outcome {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::io(
            format!("data dir {} is in use by another intact process", dir.display()),
            std::io::Error::new(std::io::ErrorKind::WouldBlock, "locked"),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

/// The catalog `choice` names, and the data-dir lock when the catalog is embedded (one
/// process owns an embedded catalog; a shared one takes no lock, so replicas may also share
/// a blob directory).
async fn open_catalog(
    data_dir: &Path,
    choice: &CatalogChoice,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn Catalog>, Option<std::fs::File>)> {
    match choice {
        CatalogChoice::Embedded => {
            let lock = lock_data_dir(data_dir)?;
            let catalog = SqliteCatalog::open(&data_dir.join("catalog.db"), clock).await?;
            Ok((Arc::new(catalog), Some(lock)))
        }
        CatalogChoice::Postgres { url } => Ok((Arc::new(PostgresCatalog::open(url).await?), None)),
    }
}

impl Store {
    /// Opens the store: the catalog `catalog` names and the blob store `blobs` names, with
    /// `data_dir` for what is local (the embedded catalog, blob files, temporary files).
    pub async fn open(
        data_dir: &Path,
        catalog: &CatalogChoice,
        blobs: &BlobSettings,
        config: StoreConfig,
    ) -> Result<Arc<Self>> {
        let dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || crate::blob::create_dir_all_durable(&dir))
            .await
            .map_err(|e| Error::io("creating data dir", std::io::Error::other(e)))?
            .map_err(|e| Error::io(format!("creating data dir {}", data_dir.display()), e))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (catalog, mut dir_lock) = open_catalog(data_dir, catalog, clock.clone()).await?;
        if dir_lock.is_none() && matches!(blobs, BlobSettings::S3(..)) {
            // Blobs in S3 leave the data dir only this replica's temporary files (and its
            // cache): it owns it, so start-up can clear what a dead run of it left there.
            // (With blob files, replicas on a shared catalog share the data dir that holds
            // them, and no one of them owns it.)
            dir_lock = Some(lock_data_dir(data_dir).map_err(|e| match e {
                Error::Io { context, source } => Error::Io {
                    context: format!("{context} (with blobs in S3 every replica needs a data dir of its own)"),
                    source,
                },
                other => other,
            })?);
        }
        let blobs = blobs.open(data_dir).await?;
        Ok(Arc::new(
            Self::new(catalog, blobs, clock, config).owning_data_dir(dir_lock),
        ))
    }

    /// The embedded default: a SQLite catalog and blob files under `data_dir`.
    pub async fn open_local(data_dir: &Path, config: StoreConfig) -> Result<Arc<Self>> {
        Self::open(data_dir, &CatalogChoice::Embedded, &BlobSettings::Files, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_urls() {
        assert_eq!(CatalogChoice::from_url(None), Ok(CatalogChoice::Embedded));
        assert_eq!(
            CatalogChoice::from_url(Some("postgres://intact@db/intact")),
            Ok(CatalogChoice::Postgres {
                url: "postgres://intact@db/intact".into()
            })
        );
        let err = CatalogChoice::from_url(Some("mysql://u:secret@db/x")).expect_err("unknown scheme");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn passwords_are_never_printed() {
        assert_eq!(
            redact("postgres://u:pw@db:5432/x?a=b"),
            "postgres://u:***@db:5432/x?a=b"
        );
        assert_eq!(redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        let choice = CatalogChoice::Postgres {
            url: "postgres://u:pw@db/x".into(),
        };
        assert!(!format!("{choice:?}").contains("pw"));
    }
}
