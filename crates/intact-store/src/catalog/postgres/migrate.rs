//! Schema migrations, applied at open by sqlx's migrator. On PostgreSQL it takes a
//! session-level advisory lock before it looks at what is applied, so replicas that start
//! together apply each migration exactly once and the others wait, then find it done.

use std::borrow::Cow;

use sqlx::PgPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::{Error, Result};

/// Ordered schema migrations (`migrations/postgres/`), embedded in the binary.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../../migrations/postgres/0001_init.sql")),
    (
        2,
        "flights",
        include_str!("../../../migrations/postgres/0002_flights.sql"),
    ),
    (
        3,
        "uploads",
        include_str!("../../../migrations/postgres/0003_uploads.sql"),
    ),
    (
        4,
        "tokens",
        include_str!("../../../migrations/postgres/0004_tokens.sql"),
    ),
    (
        5,
        "sweeper",
        include_str!("../../../migrations/postgres/0005_sweeper.sql"),
    ),
    (
        6,
        "listing covering index",
        include_str!("../../../migrations/postgres/0006_listing_covering.sql"),
    ),
    (7, "hooks", include_str!("../../../migrations/postgres/0007_hooks.sql")),
    (8, "tags", include_str!("../../../migrations/postgres/0008_tags.sql")),
    (
        9,
        "upload_sessions",
        include_str!("../../../migrations/postgres/0009_upload_sessions.sql"),
    ),
];

pub(super) async fn run(pool: &PgPool) -> Result<()> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    let mut migrator = Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    };
    migrator.set_locking(true);
    migrator.run(pool).await.map_err(|e| Error::Catalog {
        context: "migrating the catalog schema".into(),
        source: Box::new(e),
    })
}
