//! Reads the catalog directly, with the server stopped: every committed version with its
//! files, and the bookkeeping rows that must be gone after garbage collection. The embedded
//! `catalog.db` and the PostgreSQL catalog have the same tables, so one set of queries reads
//! both.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::Row;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// (repo, name, version).
pub type VersionKey = (String, String, String);

#[derive(Debug, Clone)]
pub struct VersionRow {
    pub metadata: serde_json::Value,
    /// (path, size, sha256), sorted by path.
    pub files: Vec<(String, u64, String)>,
}

/// Bookkeeping counts that are zero once everything finished and gc ran.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Leftovers {
    pub open_transactions: i64,
    pub staged_rows: i64,
    /// `blobs` rows no committed file and no staged file names.
    pub unreferenced_blob_rows: i64,
    /// Open transactions: (id, repo, name, version, expires_at ms).
    pub open: Vec<(String, String, String, String, i64)>,
}

pub struct Snapshot {
    pub versions: BTreeMap<VersionKey, VersionRow>,
    pub leftovers: Leftovers,
}

/// The queries, the same on both engines (a macro: sqlx's pools are typed by engine).
macro_rules! read_tables {
    ($pool:expr) => {{
        let pool = $pool.clone();
        let mut versions: BTreeMap<i64, (VersionKey, VersionRow)> = BTreeMap::new();
        for row in sqlx::query("SELECT id, repo, name, version, metadata FROM versions")
            .fetch_all(&pool)
            .await
            .expect("versions")
        {
            let metadata: String = row.get("metadata");
            versions.insert(
                row.get("id"),
                (
                    (row.get("repo"), row.get("name"), row.get("version")),
                    VersionRow {
                        metadata: serde_json::from_str(&metadata).expect("metadata JSON"),
                        files: Vec::new(),
                    },
                ),
            );
        }
        for row in sqlx::query("SELECT version_id, path, size, digest FROM files")
            .fetch_all(&pool)
            .await
            .expect("files")
        {
            let id: i64 = row.get("version_id");
            let size: i64 = row.get("size");
            let entry = (row.get("path"), size as u64, row.get("digest"));
            match versions.get_mut(&id) {
                Some((_, v)) => v.files.push(entry),
                None => panic!("file row {entry:?} of missing version {id}"),
            }
        }
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.expect(sql) }
        };
        let leftovers = Leftovers {
            open_transactions: count("SELECT count(*) FROM txns WHERE state = 'open'").await,
            staged_rows: count("SELECT count(*) FROM staged").await,
            unreferenced_blob_rows: count(
                "SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.digest = b.digest) \
                 AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.digest = b.digest)",
            )
            .await,
            open: sqlx::query("SELECT id, repo, name, version, expires_at FROM txns WHERE state = 'open'")
                .fetch_all(&pool)
                .await
                .expect("open txns")
                .into_iter()
                .map(|r| {
                    (
                        r.get("id"),
                        r.get("repo"),
                        r.get("name"),
                        r.get("version"),
                        r.get("expires_at"),
                    )
                })
                .collect(),
        };
        let versions = versions
            .into_values()
            .map(|(k, mut v)| {
                v.files.sort();
                (k, v)
            })
            .collect();
        Snapshot { versions, leftovers }
    }};
}

/// Which catalog to read.
#[derive(Debug, Clone)]
pub enum Source {
    /// `catalog.db` in this data dir.
    Embedded(std::path::PathBuf),
    /// A PostgreSQL catalog at this URL.
    Postgres(String),
}

fn empty() -> Snapshot {
    Snapshot {
        versions: BTreeMap::new(),
        leftovers: Leftovers::default(),
    }
}

/// Reads the catalog of a stopped server.
pub async fn read(source: &Source) -> Snapshot {
    match source {
        Source::Embedded(data_dir) => read_embedded(data_dir).await,
        Source::Postgres(url) => {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .unwrap_or_else(|e| panic!("connect to the catalog {url}: {e}"));
            let has_schema: i64 =
                sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'versions'")
                    .fetch_one(&pool)
                    .await
                    .expect("schema");
            if has_schema == 0 {
                println!("catalog {url} has no schema");
                pool.close().await;
                return empty();
            }
            let snap = read_tables!(pool);
            pool.close().await;
            snap
        }
    }
}

/// Read-only: SQLite's own recovery of the WAL is done in the shared-memory index, the files
/// are left as the crash left them.
async fn read_embedded(data_dir: &Path) -> Snapshot {
    let path = data_dir.join("catalog.db");
    if !path.exists() {
        // Lost with its directory entry: every acknowledged version is then reported gone.
        println!("catalog {} does not exist", path.display());
        return empty();
    }
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .create_if_missing(false);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let has_schema: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'versions'")
        .fetch_one(&pool)
        .await
        .expect("schema");
    if has_schema == 0 {
        println!("catalog {} has no schema", path.display());
        pool.close().await;
        return empty();
    }
    let snap = read_tables!(pool);
    pool.close().await;
    snap
}
