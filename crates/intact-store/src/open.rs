//! Which backends a store runs on, and opening them: the one place a deployment's choice
//! (embedded SQLite or a shared PostgreSQL catalog) becomes a [`Store`].

use std::path::Path;
use std::sync::Arc;

use crate::{
    Catalog, Clock, Error, FsBlobStore, PostgresCatalog, Result, SqliteCatalog, Store, StoreConfig, SystemClock,
};

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

/// Takes an exclusive lock on `dir/lock` so two processes never own one data dir.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
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
    /// Opens the store: the catalog `catalog` names, and blob files under `data_dir`.
    pub async fn open(data_dir: &Path, catalog: &CatalogChoice, config: StoreConfig) -> Result<Arc<Self>> {
        let dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || crate::blob::create_dir_all_durable(&dir))
            .await
            .map_err(|e| Error::io("creating data dir", std::io::Error::other(e)))?
            .map_err(|e| Error::io(format!("creating data dir {}", data_dir.display()), e))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (catalog, dir_lock) = open_catalog(data_dir, catalog, clock.clone()).await?;
        let blobs = FsBlobStore::open(data_dir).await?;
        Ok(Arc::new(
            Self::new(catalog, Arc::new(blobs), clock, config).owning_data_dir(dir_lock),
        ))
    }

    /// The embedded default: a SQLite catalog and blob files under `data_dir`.
    pub async fn open_local(data_dir: &Path, config: StoreConfig) -> Result<Arc<Self>> {
        Self::open(data_dir, &CatalogChoice::Embedded, config).await
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
