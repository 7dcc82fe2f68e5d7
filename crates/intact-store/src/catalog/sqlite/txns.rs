//! Transactions in SQL: opening (soft lock, `auto` numbers, idempotency keys), staging, the
//! commit that makes a version visible, rollback, lease expiry and pruning.
//!
//! Some writes are one multi-statement query with numbered parameters (`?1`...), to save
//! trips to sqlx's SQLite thread. A trap in how sqlx binds them: a number below a
//! statement's highest that the statement does not use takes a value from a counter that
//! runs on across the statements, and once that counter passes the number of values bound,
//! sqlx stops binding the rest of that statement, leaving them NULL without an error. Such
//! queries bind more values than their statements skip numbers in total; the store suite
//! checks every write's effect, so a statement added that breaks this fails it.

use super::*;

/// Moves an open transaction to a final state, dropping its staged rows, appending an
/// `aborted` event. Returns the digests it had staged.
pub(super) async fn finish_open_txn(
    tx: &mut sqlx::SqliteConnection,
    rec: &TxnRecord,
    state: TxnState,
    now: Timestamp,
) -> Result<Vec<Digest>> {
    sqlx::query("UPDATE txns SET state = ?, finished_at = ? WHERE id = ? AND state = 'open'")
        .bind(state.as_str())
        .bind(now.millis())
        .bind(rec.id.as_str())
        .execute(&mut *tx)
        .await?;
    // A rollback drops its staged rows here and hands the digests to the caller to reclaim.
    // An expiry may be noticed on any path (commit, upload, lock takeover); its rows stay
    // until `expire_txns` collects them, so every expired transaction's data is reclaimed by
    // the one sweep that runs every second.
    if state != TxnState::Expired {
        sqlx::query("DELETE FROM staged WHERE txn_id = ?")
            .bind(rec.id.as_str())
            .execute(&mut *tx)
            .await?;
    }
    let reason = if state == TxnState::Expired {
        "lease expired"
    } else {
        "rolled back"
    };
    append_event(
        tx,
        now,
        "aborted",
        (rec.repo.as_str(), rec.name.as_str(), rec.version.as_str()),
        Some(rec.id.as_str()),
        serde_json::json!({ "reason": reason, "state": state.as_str() }),
    )
    .await?;
    Ok(rec.files.iter().map(|f| f.sha256).collect())
}

/// Finishes `rec` as expired if it is open and its lease ran out by `now`, adding it to
/// `expired` (told once the write is durable).
pub(super) async fn expire_if_due(
    tx: &mut sqlx::SqliteConnection,
    rec: &mut TxnRecord,
    now: Timestamp,
    expired: &mut Expiries,
) -> Result<bool> {
    if rules::lease_ran_out(rec, now) {
        finish_open_txn(tx, rec, TxnState::Expired, now).await?;
        rec.state = TxnState::Expired;
        rec.finished_at = Some(now);
        rec.files.clear();
        expired.push(rec);
        return Ok(true);
    }
    Ok(false)
}

pub(super) async fn next_auto_number(tx: &mut sqlx::SqliteConnection, repo: &str, name: &str) -> Result<i64> {
    let committed: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(auto_number) FROM versions WHERE repo = ? AND name = ? AND auto_number IS NOT NULL",
    )
    .bind(repo)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(auto_number) FROM txns WHERE repo = ? AND name = ? AND state = 'open' AND auto_number IS NOT NULL",
    )
    .bind(repo)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    Ok(rules::next_auto_number(committed, open))
}

/// The row [`open_txn`] inserts.
struct NewTxnRow<'a> {
    req: &'a NewTxn,
    version: &'a Version,
    auto_number: Option<i64>,
    fingerprint: &'a str,
    lease_ms: i64,
    now: Timestamp,
    expires_at: Timestamp,
}

/// Inserts `row` as an open transaction unless an open transaction holds its version (the
/// soft lock); `false` if one does. One statement.
async fn insert_unless_held(tx: &mut sqlx::SqliteConnection, row: &NewTxnRow<'_>) -> Result<bool> {
    let req = row.req;
    let inserted = sqlx::query(
        "INSERT INTO txns (id, repo, name, version, auto_number, metadata, state, idempotency_key,
                           request_fingerprint, lease_ms, created_at, expires_at, owner)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?8, ?9, ?10, ?11, ?12
         WHERE NOT EXISTS (SELECT 1 FROM txns WHERE repo = ?2 AND name = ?3 AND version = ?4 AND state = 'open')",
    )
    .bind(req.id.as_str())
    .bind(req.repo.as_str())
    .bind(req.name.as_str())
    .bind(row.version.as_str())
    .bind(row.auto_number)
    .bind(req.metadata.to_string())
    .bind(req.idempotency_key.as_deref())
    .bind(row.fingerprint)
    .bind(row.lease_ms)
    .bind(row.now.millis())
    .bind(row.expires_at.millis())
    .bind(req.owner.as_deref())
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub(super) async fn open_txn(cat: &SqliteCatalog, req: &NewTxn) -> Result<OpenOutcome> {
    let req = req.clone();
    cat.write(move |tx, now, expired| {
        Box::pin(async move {
            let fingerprint = rules::request_fingerprint(&req);
            let repo = req.repo.as_str();
            let name = req.name.as_str();

            if let Some(key) = &req.idempotency_key {
                let existing: Option<String> =
                    sqlx::query_scalar("SELECT txn_id FROM idempotency WHERE repo = ? AND key = ?")
                        .bind(repo)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(txn_id) = existing {
                    let prior_fp: Option<String> =
                        sqlx::query_scalar("SELECT request_fingerprint FROM txns WHERE id = ?")
                            .bind(&txn_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let (Some(prior_fp), Some(mut prior)) = (prior_fp, load_txn(&mut *tx, &txn_id).await?) {
                        if prior_fp != fingerprint {
                            return Err(Error::IdempotencyMismatch {
                                key: key.clone(),
                                detail: format!(
                                    "it opened {}/{}@{} with other name, version or metadata",
                                    prior.repo, prior.name, prior.version
                                ),
                            });
                        }
                        let expired_now = expire_if_due(&mut *tx, &mut prior, now, expired).await?;
                        match prior.state {
                            TxnState::Open => {
                                return Ok(Ok(OpenOutcome::Resumed(prior)));
                            }
                            TxnState::Committed => {
                                let vid: Option<i64> = sqlx::query_scalar("SELECT version_id FROM txns WHERE id = ?")
                                    .bind(&txn_id)
                                    .fetch_one(&mut *tx)
                                    .await?;
                                if let Some(m) = match vid {
                                    Some(v) => load_manifest_by_id(&mut *tx, v).await?,
                                    None => None,
                                } {
                                    return Ok(Ok(OpenOutcome::Committed(prior, m)));
                                }
                                // The version it committed has since been deleted: start afresh.
                            }
                            TxnState::Aborted | TxnState::Expired => {
                                // A retry after a rollback or an expired lease starts a new transaction.
                                let _ = expired_now;
                            }
                        }
                    }
                }
            }

            // The version an edit starts from is looked up first: no transaction opens on a
            // base that is not there.
            let base_id = match &req.base {
                Some(base) => Some(
                    version_id_of(&mut *tx, repo, name, base.as_str())
                        .await?
                        .map(|(id, _)| id)
                        .ok_or_else(|| Error::not_found(what(&req.repo, &req.name, base)))?,
                ),
                None => None,
            };
            let (version, auto_number) = match &req.version {
                VersionSpec::Exact(v) => (v.clone(), v.as_auto_number()),
                VersionSpec::Auto => {
                    let n = next_auto_number(&mut *tx, repo, name).await?;
                    (Version::from_number(n), Some(n))
                }
            };

            // A version that is already committed may be opened again: publishing the same
            // content again is an idempotent success and anything else a conflict, decided at
            // commit, once the content is known.

            let lease_ms = i64::try_from(req.lease.as_millis()).unwrap_or(i64::MAX);
            let expires_at = now.plus(req.lease);
            // The soft lock: inserted only if no open transaction holds the version (one
            // statement in the common case). Otherwise the holder is looked at: a holder whose
            // lease ran out is expired here and the insert tried again.
            let row = NewTxnRow {
                req: &req,
                version: &version,
                auto_number,
                fingerprint: &fingerprint,
                lease_ms,
                now,
                expires_at,
            };
            if !insert_unless_held(&mut *tx, &row).await? {
                let holder: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM txns WHERE repo = ? AND name = ? AND version = ? AND state = 'open'",
                )
                .bind(repo)
                .bind(name)
                .bind(version.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(holder_id) = holder
                    && let Some(mut holder) = load_txn(&mut *tx, &holder_id).await?
                    && !expire_if_due(&mut *tx, &mut holder, now, expired).await?
                {
                    return Err(Error::Locked {
                        what: what(&req.repo, &req.name, &version),
                        holder: holder.id,
                        expires_at: holder.expires_at,
                    });
                }
                if !insert_unless_held(&mut *tx, &row).await? {
                    return Err(corrupt(format!(
                        "an open transaction holds {} and none could be found",
                        what(&req.repo, &req.name, &version)
                    )));
                }
            }
            let mut files = Vec::new();
            if let Some(base_id) = base_id {
                // The edit starts with the base's files: staged rows naming committed blobs,
                // which the sweep keeps while any row names them.
                sqlx::query(
                    "INSERT INTO staged (txn_id, path, size, digest)
                     SELECT ?, path, size, digest FROM files WHERE version_id = ?",
                )
                .bind(req.id.as_str())
                .bind(base_id)
                .execute(&mut *tx)
                .await?;
                files = load_txn(&mut *tx, req.id.as_str())
                    .await?
                    .map(|t| t.files)
                    .unwrap_or_default();
            }
            if let Some(key) = &req.idempotency_key {
                sqlx::query("INSERT OR REPLACE INTO idempotency (repo, key, txn_id) VALUES (?, ?, ?)")
                    .bind(repo)
                    .bind(key)
                    .bind(req.id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(Ok(OpenOutcome::Created(TxnRecord {
                id: req.id.clone(),
                repo: req.repo.clone(),
                name: req.name.clone(),
                version,
                state: TxnState::Open,
                metadata: req.metadata.clone(),
                idempotency_key: req.idempotency_key.clone(),
                created_at: now,
                expires_at,
                finished_at: None,
                lease_seconds: req.lease.as_secs(),
                files,
            })))
        })
    })
    .await
}

pub(super) async fn txn(cat: &SqliteCatalog, id: &TxnId) -> Result<TxnRecord> {
    // One statement: one snapshot of the row and its staged files.
    let mut conn = cat.read.acquire().await?;
    let rec = load_txn_consistent(&mut conn, id.as_str()).await?;
    rec.ok_or_else(|| Error::not_found(format!("transaction {id}")))
}

pub(super) async fn txn_status(cat: &SqliteCatalog, id: &TxnId) -> Result<TxnStatus> {
    let row = sqlx::query("SELECT repo, state, expires_at, lease_ms FROM txns WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&cat.read)
        .await?
        .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
    let state: String = row.try_get("state")?;
    Ok(TxnStatus {
        repo: RepoName::parse(&row.try_get::<String, _>("repo")?).map_err(|e| corrupt(e.to_string()))?,
        state: TxnState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?,
        expires_at: Timestamp(row.try_get("expires_at")?),
        lease: Duration::from_millis(u64_of(row.try_get("lease_ms")?)),
    })
}

pub(super) async fn renew_txn(cat: &SqliteCatalog, id: &TxnId) -> Result<TxnRecord> {
    let id = id.clone();
    cat.write(move |tx, now, expired| {
        Box::pin(async move {
            let mut rec = load_txn(&mut *tx, id.as_str())
                .await?
                .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
            if expire_if_due(&mut *tx, &mut rec, now, expired).await? {
                return Ok(Err(Error::TxnNotOpen {
                    id: id.clone(),
                    state: TxnState::Expired,
                }));
            }
            if rec.state != TxnState::Open {
                return Err(Error::TxnNotOpen {
                    id: id.clone(),
                    state: rec.state,
                });
            }
            let expires_at = now.plus(Duration::from_secs(rec.lease_seconds)).max(rec.expires_at);
            sqlx::query("UPDATE txns SET expires_at = ? WHERE id = ?")
                .bind(expires_at.millis())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            rec.expires_at = expires_at;
            Ok(Ok(rec))
        })
    })
    .await
}

/// The lease (ms) of open transaction `id`, for a write that stages into it or takes a file
/// out: `Err` (inner) when it is not open, after expiring it here if its lease ran out (the
/// caller commits that expiry and answers the error).
async fn open_lease(
    tx: &mut sqlx::SqliteConnection,
    id: &TxnId,
    now: Timestamp,
    expired: &mut Expiries,
) -> Result<Result<i64>> {
    let row = sqlx::query("SELECT repo, state, expires_at, lease_ms FROM txns WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
    let state: String = row.try_get("state")?;
    let state = TxnState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?;
    let expires_at = Timestamp(row.try_get("expires_at")?);
    let lease_ms: i64 = row.try_get("lease_ms")?;
    if state != TxnState::Open {
        return Err(Error::TxnNotOpen { id: id.clone(), state });
    }
    if expires_at <= now {
        let mut rec = load_txn(&mut *tx, id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
        expire_if_due(&mut *tx, &mut rec, now, expired).await?;
        return Ok(Err(Error::TxnNotOpen {
            id: id.clone(),
            state: TxnState::Expired,
        }));
    }
    Ok(Ok(lease_ms))
}

pub(super) async fn unstage_file(cat: &SqliteCatalog, id: &TxnId, path: &FilePath) -> Result<bool> {
    let (id, path) = (id.clone(), path.clone());
    cat.write(move |tx, now, expired| {
        Box::pin(async move {
            let lease_ms = match open_lease(&mut *tx, &id, now, expired).await? {
                Ok(lease_ms) => lease_ms,
                Err(e) => return Ok(Err(e)),
            };
            // The blob stays registered: gc reclaims it if nothing else names it.
            let removed = sqlx::query("DELETE FROM staged WHERE txn_id = ? AND path = ?")
                .bind(id.as_str())
                .bind(path.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE txns SET expires_at = MAX(expires_at, ?) WHERE id = ?")
                .bind(now.millis().saturating_add(lease_ms))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            Ok(Ok(removed == 1))
        })
    })
    .await
}

pub(super) async fn stage_file(
    cat: &SqliteCatalog,
    id: &TxnId,
    file: &FileEntry,
    max_files: Option<u64>,
) -> Result<()> {
    let (id, file) = (id.clone(), file.clone());
    cat.write(move |tx, now, expired| {
        Box::pin(async move {
            let lease_ms = match open_lease(&mut *tx, &id, now, expired).await? {
                Ok(lease_ms) => lease_ms,
                Err(e) => return Ok(Err(e)),
            };
            if let Some(limit) = max_files {
                // Under the single writer: no other staging into this transaction runs meanwhile.
                // Counting stops at the limit, so the check costs at most `limit` index entries.
                let (is_new, staged): (bool, i64) = sqlx::query_as(
                    "SELECT NOT EXISTS (SELECT 1 FROM staged WHERE txn_id = ?1 AND path = ?2),
                            (SELECT COUNT(*) FROM (SELECT 1 FROM staged WHERE txn_id = ?1 LIMIT ?3))",
                )
                .bind(id.as_str())
                .bind(file.path.as_str())
                .bind(i64_of(limit))
                .fetch_one(&mut *tx)
                .await?;
                if is_new && u64_of(staged) >= limit {
                    return Err(Error::TooManyFiles { id: id.clone(), limit });
                }
            }
            // The blob registered, the file staged and the lease renewed (activity renews it)
            // in one trip to sqlx's SQLite thread.
            sqlx::query(
                "INSERT INTO blobs (digest, size, registered) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO UPDATE SET registered = excluded.registered;
                 INSERT OR REPLACE INTO staged (txn_id, path, size, digest) VALUES (?4, ?5, ?2, ?1);
                 UPDATE txns SET expires_at = MAX(expires_at, ?6) WHERE id = ?4",
            )
            .bind(file.sha256.to_hex())
            .bind(i64_of(file.size))
            .bind(now.millis())
            .bind(id.as_str())
            .bind(file.path.as_str())
            .bind(now.millis().saturating_add(lease_ms))
            .execute(&mut *tx)
            .await?;
            Ok(Ok(()))
        })
    })
    .await
}

pub(super) async fn commit_txn(cat: &SqliteCatalog, id: &TxnId, verified: &[FileEntry]) -> Result<CommitOutcome> {
    let (id, verified) = (id.clone(), verified.to_vec());
    cat.write(move |tx, now, expired| {
        Box::pin(async move {
            let mut rec = load_txn(&mut *tx, id.as_str())
                .await?
                .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
            match rec.state {
                TxnState::Committed => {
                    let vid: Option<i64> = sqlx::query_scalar("SELECT version_id FROM txns WHERE id = ?")
                        .bind(id.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                    let manifest = match vid {
                        Some(v) => load_manifest_by_id(&mut *tx, v).await?,
                        None => None,
                    };
                    return Ok(manifest
                        .map(CommitOutcome::AlreadyCommitted)
                        .ok_or_else(|| Error::not_found(format!("the version committed by {id} (since deleted)"))));
                }
                TxnState::Aborted | TxnState::Expired => {
                    return Err(Error::TxnNotOpen {
                        id: id.clone(),
                        state: rec.state,
                    });
                }
                TxnState::Open => {}
            }
            if expire_if_due(&mut *tx, &mut rec, now, expired).await? {
                return Ok(Err(Error::TxnNotOpen {
                    id: id.clone(),
                    state: TxnState::Expired,
                }));
            }
            rules::check_staged(&rec, &verified)?;
            let (repo, name, version) = (rec.repo.as_str(), rec.name.as_str(), rec.version.as_str());
            let fingerprint = rules::content_of(&rec);

            if let Some((existing_id, existing_fp)) = version_id_of(&mut *tx, repo, name, version).await? {
                // Loaded only to say what differs (a conflict is rare; a retry is not).
                let existing = if existing_fp != fingerprint {
                    load_manifest_by_id(&mut *tx, existing_id).await?
                } else {
                    None
                };
                rules::same_content(&rec, &existing_fp, existing.as_ref())?;
                // Identical content: this commit is a retry of one that already landed.
                sqlx::query("UPDATE txns SET state = 'committed', finished_at = ?, version_id = ? WHERE id = ?")
                    .bind(now.millis())
                    .bind(existing_id)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM staged WHERE txn_id = ?")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let manifest = load_manifest_by_id(&mut *tx, existing_id)
                    .await?
                    .ok_or_else(|| corrupt("version vanished inside a transaction"))?;
                return Ok(Ok(CommitOutcome::AlreadyCommitted(manifest)));
            }

            let total: u64 = rec.files.iter().map(|f| f.size).sum();
            let event = serde_json::json!({ "files": rec.files.len(), "size": total, "fingerprint": fingerprint });
            // The commit's writes as one multi-statement query: one trip to sqlx's SQLite
            // thread instead of seven. The event is appended first and the version takes its
            // seq (`last_insert_rowid()`, read before the version row is inserted); the last
            // statement reads that seq back.
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO events (at, kind, repo, name, version, txn_id, data)
                 VALUES (?1, 'committed', ?2, ?3, ?4, ?5, ?6);
                 INSERT INTO versions (repo, name, version, auto_number, metadata, fingerprint, txn_id, seq, created_at,
                                       last_access, total_size, file_count)
                 VALUES (?2, ?3, ?4, ?7, ?8, ?9, ?5, last_insert_rowid(), ?1, ?1, ?10, ?11);
                 INSERT INTO files (version_id, path, size, digest)
                 SELECT (SELECT id FROM versions WHERE repo = ?2 AND name = ?3 AND version = ?4), path, size, digest
                 FROM staged WHERE txn_id = ?5;
                 DELETE FROM staged WHERE txn_id = ?5;
                 UPDATE txns SET state = 'committed', finished_at = ?1,
                                 version_id = (SELECT id FROM versions WHERE repo = ?2 AND name = ?3 AND version = ?4)
                 WHERE id = ?5;
                 INSERT INTO names (repo, name, versions) VALUES (?2, ?3, 1)
                 ON CONFLICT (repo, name) DO UPDATE SET versions = versions + 1;
                 SELECT seq FROM versions WHERE repo = ?2 AND name = ?3 AND version = ?4",
            )
            .bind(now.millis())
            .bind(repo)
            .bind(name)
            .bind(version)
            .bind(id.as_str())
            .bind(event.to_string())
            .bind(rec.version.as_auto_number())
            .bind(rec.metadata.to_string())
            .bind(&fingerprint)
            .bind(i64_of(total))
            .bind(i64_of(rec.files.len() as u64))
            .fetch_one(&mut *tx)
            .await?;
            Ok(Ok(CommitOutcome::Committed(Manifest {
                repo: rec.repo,
                name: rec.name,
                version: rec.version,
                files: rec.files,
                metadata: rec.metadata,
                created_at: now,
                transaction: Some(id.clone()),
                seq,
            })))
        })
    })
    .await
}

pub(super) async fn abort_txn(cat: &SqliteCatalog, id: &TxnId) -> Result<Finished> {
    let id = id.clone();
    cat.write(move |tx, now, _| {
        Box::pin(async move {
            let rec = load_txn(&mut *tx, id.as_str())
                .await?
                .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
            match rec.state {
                TxnState::Aborted | TxnState::Expired => Ok(Ok(Finished::default())),
                TxnState::Committed => Err(Error::TxnNotOpen {
                    id: id.clone(),
                    state: rec.state,
                }),
                TxnState::Open => {
                    let digests = finish_open_txn(&mut *tx, &rec, TxnState::Aborted, now).await?;
                    Ok(Ok(Finished {
                        txns: vec![rec.id],
                        staged_digests: digests,
                        expired: 0,
                    }))
                }
            }
        })
    })
    .await
}

pub(super) async fn expire_txns(cat: &SqliteCatalog) -> Result<Finished> {
    const LEFTOVERS: &str = "SELECT DISTINCT s.txn_id, s.digest FROM staged s JOIN txns t ON t.id = s.txn_id
                             WHERE t.state <> 'open'";
    let mut finished = Finished::default();
    // A cheap look first, outside the writer lock; each candidate is checked again against
    // the clock read inside the write transaction.
    let due: Vec<String> =
        sqlx::query_scalar("SELECT id FROM txns WHERE state = 'open' AND expires_at <= ? LIMIT 1000")
            .bind(cat.clock.now().millis())
            .fetch_all(&cat.read)
            .await?;
    let leftovers: Option<i64> = sqlx::query_scalar(&format!("SELECT 1 FROM ({LEFTOVERS}) LIMIT 1"))
        .fetch_optional(&cat.read)
        .await?;
    if due.is_empty() && leftovers.is_none() {
        return Ok(finished);
    }
    let (mut tx, now) = cat.begin().await?;
    let mut expired = Expiries::default();
    for id in due {
        if let Some(mut rec) = load_txn(&mut tx, &id).await?
            && expire_if_due(&mut tx, &mut rec, now, &mut expired).await?
        {
            finished.txns.push(rec.id);
            finished.expired += 1;
        }
    }
    // Staged rows of every finished transaction: this sweep's expiries and those noticed
    // elsewhere since the last sweep.
    let rows = sqlx::query(LEFTOVERS).fetch_all(&mut *tx).await?;
    for r in &rows {
        let hex: String = r.try_get("digest")?;
        finished
            .staged_digests
            .push(Digest::parse(&hex).map_err(|e| corrupt(e.to_string()))?);
        let id: String = r.try_get("txn_id")?;
        if let Ok(id) = TxnId::parse(&id)
            && !finished.txns.contains(&id)
        {
            finished.txns.push(id);
        }
    }
    sqlx::query("DELETE FROM staged WHERE txn_id IN (SELECT id FROM txns WHERE state <> 'open')")
        .execute(&mut *tx)
        .await?;
    cat.commit(tx).await?;
    expired.durable();
    Ok(finished)
}

pub(super) async fn prune_txns(cat: &SqliteCatalog, older_than: Duration) -> Result<u64> {
    let (mut tx, now) = cat.begin().await?;
    let res = sqlx::query("DELETE FROM txns WHERE state <> 'open' AND finished_at < ?")
        .bind(now.minus(older_than).millis())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM idempotency WHERE txn_id NOT IN (SELECT id FROM txns)")
        .execute(&mut *tx)
        .await?;
    cat.commit(tx).await?;
    Ok(res.rows_affected())
}

pub(super) async fn open_txns(cat: &SqliteCatalog, repo: &RepoName, limit: u32) -> Result<Vec<TxnId>> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM txns WHERE state = 'open' AND repo = ? ORDER BY created_at LIMIT ?")
            .bind(repo.as_str())
            .bind(i64::from(limit))
            .fetch_all(&cat.read)
            .await?;
    ids.iter()
        .map(|id| TxnId::parse(id).map_err(|e| corrupt(e.to_string())))
        .collect()
}
