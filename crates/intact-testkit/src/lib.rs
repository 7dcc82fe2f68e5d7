//! Test support shared by intact's suites (a dev-dependency of the suites, never linked into
//! the intact binary); intact-bench's scale-out group starts its PostgreSQL database and Garage
//! with it too.
//!
//! [`TestDatabase`]: a fresh PostgreSQL database for one test, on the server named by
//! `INTACT_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped
//! when the test is done. A test that needs PostgreSQL fails when it is unreachable, saying
//! how to start it: it never skips.
//!
//! [`Garage`]: a real S3-compatible server started on loopback ([`shared_garage`] gives each
//! test binary one), for the tests of the S3 blob store.
//!
//! [`Relay`]: a TCP relay to a backend that a test cuts and restores (an outage).
//!
//! [`TestCa`]: a throw-away CA issuing server certificates, for the TLS suites.

pub mod certs;
pub mod garage;
pub mod relay;

pub use certs::{TestCa, TestCert};
pub use garage::{Garage, shared_garage};
pub use relay::Relay;

use sqlx::{Connection, PgConnection};

/// The server tests create their databases on (a URL naming its maintenance database).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test and dropped (best-effort, with whatever is still connected
/// to it) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Connects to the test's database.
    pub url: String,
    /// The database's name (`intact_test_<random>`).
    pub name: String,
    admin_url: String,
}

fn admin_url() -> String {
    std::env::var("INTACT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// `admin` with its database replaced by `database`.
fn with_database(admin: &str, database: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    // After "scheme://authority", the path is the database.
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..authority_end])
}

impl TestDatabase {
    /// Creates a fresh, empty database. Panics, saying how to start PostgreSQL, when the
    /// server cannot be reached.
    pub async fn create() -> Self {
        Self::try_create().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestDatabase::create`] for callers that report failure themselves (intact-bench's
    /// scale-out group is a program, not a test: it exits with the message instead).
    pub async fn try_create() -> Result<Self, String> {
        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|e| {
            format!(
                "this needs PostgreSQL at {admin_url} ({e}). Start it with `scripts/test` (which \
                 starts or installs it), or by hand: `pg_ctlcluster --skip-systemctl-redirect 15 main start` \
                 (see `pg_lsclusters`); or point INTACT_TEST_POSTGRES_URL at another server"
            )
        })?;
        let name = format!("intact_test_{:016x}", rand::random::<u64>());
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("creating test database {name} on {admin_url}: {e}"))?;
        let _ = admin.close().await;
        Ok(Self {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which must not be blocked on: a thread of its
        // own with a runtime of its own does the dropping.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_replaced_in_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@db:5432/postgres?sslmode=disable", "t2"),
            "postgres://u:p@db:5432/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://db", "t3"), "postgres://db/t3");
    }
}
