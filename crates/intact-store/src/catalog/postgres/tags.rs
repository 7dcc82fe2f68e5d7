//! Tags: movable pointers to versions, moved by compare-and-swap under the name's lock (so
//! replicas moving one tag take turns), each move told by an event and kept in `tag_moves`.

use intact_core::Tag;

use super::rows::version_row;
use super::*;
use crate::catalog::columns::what;
use crate::catalog::{TagHistoryEntry, TagMove, TagMoved, TagRecord, rules};

use crate::catalog::columns::{tag_move_from_row, tag_record_from_row, version as version_of};

pub(super) async fn move_tag(cat: &PostgresCatalog, mv: &TagMove) -> Result<TagMoved> {
    let mut w = cat.begin().await?;
    let (repo, name, tag) = (mv.repo.as_str(), mv.name.as_str(), mv.tag.as_str());
    // The name's lock: tag moves of the name take turns, and the version cannot be deleted
    // between the check below and the commit.
    lock_name(w.conn(), repo, name).await?;
    let now = cat.now(&mut w).await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT version FROM tags WHERE repo = $1 AND name = $2 AND tag = $3")
            .bind(repo)
            .bind(name)
            .bind(tag)
            .fetch_optional(w.conn())
            .await?;
    let current = current.as_deref().map(version_of).transpose()?;
    if let Some(v) = &mv.version
        && version_row(w.conn(), &mv.repo, &mv.name, v).await?.is_none()
    {
        return Err(Error::not_found(what(&mv.repo, &mv.name, v)));
    }
    if !rules::tag_move_allowed(current.as_ref(), mv)? {
        let now = match &mv.version {
            Some(_) => load_tag(w.conn(), mv).await?,
            None => None,
        };
        return Ok(TagMoved {
            now,
            previous: current,
            moved: false,
        });
    }
    let Some((kind, named, data)) = rules::tag_event(mv, current.as_ref()) else {
        return Err(corrupt("a tag move that changes something names no version"));
    };
    let seq = events::insert(
        &mut w,
        &events::NewEvent {
            at: now,
            kind,
            repo: repo.to_owned(),
            name: name.to_owned(),
            version: named.as_str().to_owned(),
            txn_id: None,
            data,
        },
    )
    .await?;
    match &mv.version {
        Some(v) => {
            sqlx::query(
                "INSERT INTO tags (repo, name, tag, version, moved_at, moved_by) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (repo, name, tag) DO UPDATE SET
                   version = excluded.version, moved_at = excluded.moved_at, moved_by = excluded.moved_by",
            )
            .bind(repo)
            .bind(name)
            .bind(tag)
            .bind(v.as_str())
            .bind(now.millis())
            .bind(mv.by.as_deref())
            .execute(w.conn())
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM tags WHERE repo = $1 AND name = $2 AND tag = $3")
                .bind(repo)
                .bind(name)
                .bind(tag)
                .execute(w.conn())
                .await?;
        }
    }
    sqlx::query(
        "INSERT INTO tag_moves (seq, repo, name, tag, version, previous, at, moved_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(repo)
    .bind(name)
    .bind(tag)
    .bind(mv.version.as_ref().map(Version::as_str))
    .bind(current.as_ref().map(Version::as_str))
    .bind(now.millis())
    .bind(mv.by.as_deref())
    .execute(w.conn())
    .await?;
    cat.commit(w).await?;
    Ok(TagMoved {
        now: mv.version.clone().map(|version| TagRecord {
            tag: mv.tag.clone(),
            version,
            moved_at: now,
            moved_by: mv.by.clone(),
        }),
        previous: current,
        moved: true,
    })
}

async fn load_tag(conn: &mut sqlx::PgConnection, mv: &TagMove) -> Result<Option<TagRecord>> {
    let row =
        sqlx::query("SELECT tag, version, moved_at, moved_by FROM tags WHERE repo = $1 AND name = $2 AND tag = $3")
            .bind(mv.repo.as_str())
            .bind(mv.name.as_str())
            .bind(mv.tag.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    row.as_ref().map(tag_record_from_row).transpose()
}

pub(super) async fn tag(cat: &PostgresCatalog, repo: &RepoName, name: &Name, tag: &Tag) -> Result<Option<TagRecord>> {
    let row =
        sqlx::query("SELECT tag, version, moved_at, moved_by FROM tags WHERE repo = $1 AND name = $2 AND tag = $3")
            .bind(repo.as_str())
            .bind(name.as_str())
            .bind(tag.as_str())
            .fetch_optional(&cat.pool)
            .await?;
    row.as_ref().map(tag_record_from_row).transpose()
}

pub(super) async fn tags(cat: &PostgresCatalog, repo: &RepoName, name: &Name) -> Result<Vec<TagRecord>> {
    let rows = sqlx::query(
        "SELECT tag, version, moved_at, moved_by FROM tags WHERE repo = $1 AND name = $2 ORDER BY tag COLLATE \"C\" LIMIT 10000",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .fetch_all(&cat.pool)
    .await?;
    rows.iter().map(tag_record_from_row).collect()
}

pub(super) async fn tag_history(
    cat: &PostgresCatalog,
    repo: &RepoName,
    name: &Name,
    tag: &Tag,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<TagHistoryEntry>> {
    let rows = sqlx::query(
        "SELECT seq, version, previous, at, moved_by FROM tag_moves
         WHERE repo = $1 AND name = $2 AND tag = $3 AND seq < $4 ORDER BY seq DESC LIMIT $5",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(tag.as_str())
    .bind(before.unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(&cat.pool)
    .await?;
    rows.iter().map(tag_move_from_row).collect()
}
