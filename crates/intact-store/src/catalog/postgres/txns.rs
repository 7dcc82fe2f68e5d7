//! Transactions in SQL: opening (soft lock, `auto` numbers, idempotency keys), staging, the
//! commit that makes a version visible, rollback, lease expiry and pruning, safe with other
//! replicas writing the same database (see the module comment of `postgres` for the locks).

use intact_core::TxnState;

use super::rows::{RowLock, committed_manifest_of, load_manifest_by_id, load_txn, version_id_of};
use super::*;

/// Moves an open transaction (row locked by `w`) to a final state, dropping its staged rows
/// unless it expired, and queues its `aborted` event. Returns the digests it had staged.
async fn finish_open_txn(w: &mut Write, rec: &TxnRecord, state: TxnState, now: Timestamp) -> Result<Vec<Digest>> {
    sqlx::query("UPDATE txns SET state = $1, finished_at = $2 WHERE id = $3 AND state = 'open'")
        .bind(state.as_str())
        .bind(now.millis())
        .bind(rec.id.as_str())
        .execute(w.conn())
        .await?;
    // As on SQLite: an expiry noticed on any path leaves its staged rows for `expire_txns`,
    // so every expired transaction's data is reclaimed by the one sweep.
    if state != TxnState::Expired {
        sqlx::query("DELETE FROM staged WHERE txn_id = $1")
            .bind(rec.id.as_str())
            .execute(w.conn())
            .await?;
    }
    let reason = if state == TxnState::Expired {
        "lease expired"
    } else {
        "rolled back"
    };
    w.event(events::NewEvent {
        at: now,
        kind: "aborted",
        repo: rec.repo.as_str().to_owned(),
        name: rec.name.as_str().to_owned(),
        version: rec.version.as_str().to_owned(),
        txn_id: Some(rec.id.as_str().to_owned()),
        data: serde_json::json!({ "reason": reason, "state": state.as_str() }),
    });
    Ok(rec.files.iter().map(|f| f.sha256).collect())
}

/// Finishes `rec` (row locked by `w`) as expired if it is open and its lease ran out by `now`;
/// told once `w` commits.
async fn expire_if_due(w: &mut Write, rec: &mut TxnRecord, now: Timestamp) -> Result<bool> {
    if rules::lease_ran_out(rec, now) {
        finish_open_txn(w, rec, TxnState::Expired, now).await?;
        rec.state = TxnState::Expired;
        rec.finished_at = Some(now);
        rec.files.clear();
        w.expired.push(rec);
        return Ok(true);
    }
    Ok(false)
}

async fn next_auto_number(conn: &mut sqlx::PgConnection, repo: &str, name: &str) -> Result<i64> {
    let committed: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(auto_number) FROM versions WHERE repo = $1 AND name = $2 AND auto_number IS NOT NULL",
    )
    .bind(repo)
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(auto_number) FROM txns
         WHERE repo = $1 AND name = $2 AND state = 'open' AND auto_number IS NOT NULL",
    )
    .bind(repo)
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    Ok(rules::next_auto_number(committed, open))
}

fn not_found(id: &TxnId) -> Error {
    Error::not_found(format!("transaction {id}"))
}

pub(super) async fn open_txn(cat: &PostgresCatalog, req: &NewTxn) -> Result<OpenOutcome> {
    let mut w = cat.begin().await?;
    let fingerprint = rules::request_fingerprint(req);
    let repo = req.repo.as_str();
    let name = req.name.as_str();
    // Key first, then name: every writer takes them in this order.
    if let Some(key) = &req.idempotency_key {
        lock(w.conn(), "idempotency", &format!("{repo}\u{1f}{key}")).await?;
    }
    lock_name(w.conn(), repo, name).await?;
    let now = cat.now(&mut w).await?;

    if let Some(key) = &req.idempotency_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT txn_id FROM idempotency WHERE repo = $1 AND key = $2")
                .bind(repo)
                .bind(key)
                .fetch_optional(w.conn())
                .await?;
        if let Some(txn_id) = existing {
            let prior_fp: Option<String> = sqlx::query_scalar("SELECT request_fingerprint FROM txns WHERE id = $1")
                .bind(&txn_id)
                .fetch_optional(w.conn())
                .await?;
            if let Some(prior_fp) = prior_fp {
                if prior_fp != fingerprint {
                    let prior = load_txn(w.conn(), &txn_id, RowLock::None).await?;
                    return Err(Error::IdempotencyMismatch {
                        key: key.clone(),
                        detail: match prior {
                            Some(p) => format!(
                                "it opened {}/{}@{} with other name, version or metadata",
                                p.repo, p.name, p.version
                            ),
                            None => "it opened another request".into(),
                        },
                    });
                }
                // Same fingerprint, so the same name: this row is under our name lock.
                if let Some(mut prior) = load_txn(w.conn(), &txn_id, RowLock::Update).await? {
                    expire_if_due(&mut w, &mut prior, now).await?;
                    match prior.state {
                        TxnState::Open => {
                            cat.commit(w).await?;
                            return Ok(OpenOutcome::Resumed(prior));
                        }
                        TxnState::Committed => {
                            if let Some(m) = committed_manifest_of(w.conn(), &txn_id).await? {
                                cat.commit(w).await?;
                                return Ok(OpenOutcome::Committed(prior, m));
                            }
                            // The version it committed has since been deleted: start afresh.
                        }
                        // A retry after a rollback or an expired lease starts a new transaction.
                        TxnState::Aborted | TxnState::Expired => {}
                    }
                }
            }
        }
    }

    // The version an edit starts from is looked up first (under the name lock, so it cannot
    // be deleted meanwhile): no transaction opens on a base that is not there.
    let base_id = match &req.base {
        Some(base) => Some(
            version_id_of(w.conn(), repo, name, base.as_str())
                .await?
                .map(|(id, _)| id)
                .ok_or_else(|| Error::not_found(columns::what(&req.repo, &req.name, base)))?,
        ),
        None => None,
    };
    let (version, auto_number) = match &req.version {
        VersionSpec::Exact(v) => (v.clone(), v.as_auto_number()),
        VersionSpec::Auto => {
            let n = next_auto_number(w.conn(), repo, name).await?;
            (Version::from_number(n), Some(n))
        }
    };

    // A committed version may be opened again: publishing the same content again is an
    // idempotent success and anything else a conflict, decided at commit.
    let holder: Option<String> =
        sqlx::query_scalar("SELECT id FROM txns WHERE repo = $1 AND name = $2 AND version = $3 AND state = 'open'")
            .bind(repo)
            .bind(name)
            .bind(version.as_str())
            .fetch_optional(w.conn())
            .await?;
    if let Some(holder_id) = holder
        && let Some(mut holder) = load_txn(w.conn(), &holder_id, RowLock::Update).await?
    {
        // The wait for the holder's row may have taken a while: judge its lease now.
        let now = cat.now(&mut w).await?;
        if !expire_if_due(&mut w, &mut holder, now).await? {
            return Err(Error::Locked {
                what: columns::what(&req.repo, &req.name, &version),
                holder: holder.id,
                expires_at: holder.expires_at,
            });
        }
    }

    let lease_ms = i64::try_from(req.lease.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now.plus(req.lease);
    sqlx::query(
        "INSERT INTO txns (id, repo, name, version, auto_number, metadata, state, idempotency_key,
                           request_fingerprint, lease_ms, created_at, expires_at, owner)
         VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10, $11, $12)",
    )
    .bind(req.id.as_str())
    .bind(repo)
    .bind(name)
    .bind(version.as_str())
    .bind(auto_number)
    .bind(req.metadata.to_string())
    .bind(req.idempotency_key.as_deref())
    .bind(&fingerprint)
    .bind(lease_ms)
    .bind(now.millis())
    .bind(expires_at.millis())
    .bind(req.owner.as_deref())
    .execute(w.conn())
    .await?;
    let mut files = Vec::new();
    if let Some(base_id) = base_id {
        // The edit starts with the base's files: staged rows naming committed blobs, which
        // the sweep keeps while any row names them.
        sqlx::query(
            "INSERT INTO staged (txn_id, path, size, digest)
             SELECT $1, path, size, digest FROM files WHERE version_id = $2",
        )
        .bind(req.id.as_str())
        .bind(base_id)
        .execute(w.conn())
        .await?;
        files = load_txn(w.conn(), req.id.as_str(), RowLock::None)
            .await?
            .map(|t| t.files)
            .unwrap_or_default();
    }
    if let Some(key) = &req.idempotency_key {
        sqlx::query(
            "INSERT INTO idempotency (repo, key, txn_id) VALUES ($1, $2, $3)
             ON CONFLICT (repo, key) DO UPDATE SET txn_id = excluded.txn_id",
        )
        .bind(repo)
        .bind(key)
        .bind(req.id.as_str())
        .execute(w.conn())
        .await?;
    }
    cat.commit(w).await?;
    Ok(OpenOutcome::Created(TxnRecord {
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
    }))
}

pub(super) async fn txn(cat: &PostgresCatalog, id: &TxnId) -> Result<TxnRecord> {
    // One snapshot for the row and its staged files (two statements).
    let mut tx = cat.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rec = load_txn(&mut tx, id.as_str(), RowLock::None).await?;
    tx.rollback().await?;
    rec.ok_or_else(|| not_found(id))
}

pub(super) async fn txn_status(cat: &PostgresCatalog, id: &TxnId) -> Result<TxnStatus> {
    let row = sqlx::query("SELECT repo, state, expires_at, lease_ms FROM txns WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&cat.pool)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(TxnStatus {
        repo: RepoName::parse(&row.try_get::<String, _>("repo")?).map_err(|e| corrupt(e.to_string()))?,
        state: columns::state(&row.try_get::<String, _>("state")?)?,
        expires_at: Timestamp(row.try_get("expires_at")?),
        lease: Duration::from_millis(u64_of(row.try_get("lease_ms")?)),
    })
}

pub(super) async fn renew_txn(cat: &PostgresCatalog, id: &TxnId) -> Result<TxnRecord> {
    let mut w = cat.begin().await?;
    let mut rec = load_txn(w.conn(), id.as_str(), RowLock::Update)
        .await?
        .ok_or_else(|| not_found(id))?;
    let now = cat.now(&mut w).await?;
    if expire_if_due(&mut w, &mut rec, now).await? {
        cat.commit(w).await?;
        return Err(Error::TxnNotOpen {
            id: id.clone(),
            state: TxnState::Expired,
        });
    }
    if rec.state != TxnState::Open {
        return Err(Error::TxnNotOpen {
            id: id.clone(),
            state: rec.state,
        });
    }
    let expires_at = now.plus(Duration::from_secs(rec.lease_seconds)).max(rec.expires_at);
    sqlx::query("UPDATE txns SET expires_at = $1 WHERE id = $2")
        .bind(expires_at.millis())
        .bind(id.as_str())
        .execute(w.conn())
        .await?;
    cat.commit(w).await?;
    rec.expires_at = expires_at;
    Ok(rec)
}

pub(super) async fn unstage_file(cat: &PostgresCatalog, id: &TxnId, path: &FilePath) -> Result<bool> {
    let mut w = cat.begin().await?;
    // The row lock serializes this with every staging into the transaction and its commit.
    let mut rec = load_txn(w.conn(), id.as_str(), RowLock::Update)
        .await?
        .ok_or_else(|| not_found(id))?;
    let now = cat.now(&mut w).await?;
    if expire_if_due(&mut w, &mut rec, now).await? {
        cat.commit(w).await?;
        return Err(Error::TxnNotOpen {
            id: id.clone(),
            state: TxnState::Expired,
        });
    }
    if rec.state != TxnState::Open {
        return Err(Error::TxnNotOpen {
            id: id.clone(),
            state: rec.state,
        });
    }
    // The blob stays registered: gc reclaims it if nothing else names it.
    let removed = sqlx::query("DELETE FROM staged WHERE txn_id = $1 AND path = $2")
        .bind(id.as_str())
        .bind(path.as_str())
        .execute(w.conn())
        .await?
        .rows_affected();
    let expires_at = now.plus(Duration::from_secs(rec.lease_seconds)).max(rec.expires_at);
    sqlx::query("UPDATE txns SET expires_at = $1 WHERE id = $2")
        .bind(expires_at.millis())
        .bind(id.as_str())
        .execute(w.conn())
        .await?;
    cat.commit(w).await?;
    Ok(removed == 1)
}

pub(super) async fn stage_file(
    cat: &PostgresCatalog,
    id: &TxnId,
    file: &FileEntry,
    max_files: Option<u64>,
) -> Result<()> {
    let mut w = cat.begin().await?;
    let row = sqlx::query("SELECT repo, state, expires_at, lease_ms FROM txns WHERE id = $1 FOR UPDATE")
        .bind(id.as_str())
        .fetch_optional(w.conn())
        .await?
        .ok_or_else(|| not_found(id))?;
    let state = columns::state(&row.try_get::<String, _>("state")?)?;
    let expires_at = Timestamp(row.try_get("expires_at")?);
    let lease_ms: i64 = row.try_get("lease_ms")?;
    if state != TxnState::Open {
        return Err(Error::TxnNotOpen { id: id.clone(), state });
    }
    if let Some(limit) = max_files {
        // The row lock above serializes every staging into this transaction, on any replica.
        let is_new: bool =
            sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM staged WHERE txn_id = $1 AND path = $2)")
                .bind(id.as_str())
                .bind(file.path.as_str())
                .fetch_one(w.conn())
                .await?;
        // Counting stops at the limit, so the check costs at most `limit` index entries.
        let staged: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM staged WHERE txn_id = $1 LIMIT $2) AS s")
                .bind(id.as_str())
                .bind(i64_of(limit))
                .fetch_one(w.conn())
                .await?;
        if is_new && u64_of(staged) >= limit {
            return Err(Error::TooManyFiles { id: id.clone(), limit });
        }
    }
    let digest = file.sha256.to_hex();
    // The digest's exclusion, shared with the sweeps: a sweep deciding this blob is
    // unreferenced and deleting its bytes runs wholly before this registration or after it.
    blobs::lock_digest(w.conn(), &digest).await?;
    let now = cat.now(&mut w).await?;
    if expires_at <= now {
        let mut rec = load_txn(w.conn(), id.as_str(), RowLock::Update)
            .await?
            .ok_or_else(|| not_found(id))?;
        expire_if_due(&mut w, &mut rec, now).await?;
        cat.commit(w).await?;
        return Err(Error::TxnNotOpen {
            id: id.clone(),
            state: TxnState::Expired,
        });
    }
    sqlx::query(
        "INSERT INTO blobs (digest, size, registered) VALUES ($1, $2, $3)
         ON CONFLICT (digest) DO UPDATE SET registered = excluded.registered",
    )
    .bind(&digest)
    .bind(i64_of(file.size))
    .bind(now.millis())
    .execute(w.conn())
    .await?;
    sqlx::query(
        "INSERT INTO staged (txn_id, path, size, digest) VALUES ($1, $2, $3, $4)
         ON CONFLICT (txn_id, path) DO UPDATE SET size = excluded.size, digest = excluded.digest",
    )
    .bind(id.as_str())
    .bind(file.path.as_str())
    .bind(i64_of(file.size))
    .bind(&digest)
    .execute(w.conn())
    .await?;
    // Activity renews the lease.
    sqlx::query("UPDATE txns SET expires_at = GREATEST(expires_at, $1) WHERE id = $2")
        .bind(now.millis().saturating_add(lease_ms))
        .bind(id.as_str())
        .execute(w.conn())
        .await?;
    cat.commit(w).await?;
    Ok(())
}

pub(super) async fn commit_txn(cat: &PostgresCatalog, id: &TxnId, verified: &[FileEntry]) -> Result<CommitOutcome> {
    let mut w = cat.begin().await?;
    // The name is needed to lock it; a transaction's name never changes.
    let target = load_txn(w.conn(), id.as_str(), RowLock::None)
        .await?
        .ok_or_else(|| not_found(id))?;
    lock_name(w.conn(), target.repo.as_str(), target.name.as_str()).await?;
    let mut rec = load_txn(w.conn(), id.as_str(), RowLock::Update)
        .await?
        .ok_or_else(|| not_found(id))?;
    let now = cat.now(&mut w).await?;
    match rec.state {
        TxnState::Committed => {
            return committed_manifest_of(w.conn(), id.as_str())
                .await?
                .map(CommitOutcome::AlreadyCommitted)
                .ok_or_else(|| Error::not_found(format!("the version committed by {id} (since deleted)")));
        }
        TxnState::Aborted | TxnState::Expired => {
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: rec.state,
            });
        }
        TxnState::Open => {}
    }
    if expire_if_due(&mut w, &mut rec, now).await? {
        cat.commit(w).await?;
        return Err(Error::TxnNotOpen {
            id: id.clone(),
            state: TxnState::Expired,
        });
    }
    rules::check_staged(&rec, verified)?;
    let (repo, name, version) = (rec.repo.as_str(), rec.name.as_str(), rec.version.as_str());
    let fingerprint = rules::content_of(&rec);

    if let Some((existing_id, existing_fp)) = version_id_of(w.conn(), repo, name, version).await? {
        // Loaded only to say what differs (a conflict is rare; a retry is not).
        let existing = if existing_fp != fingerprint {
            load_manifest_by_id(w.conn(), existing_id).await?
        } else {
            None
        };
        rules::same_content(&rec, &existing_fp, existing.as_ref())?;
        // Identical content: this commit is a retry of one that already landed.
        sqlx::query("UPDATE txns SET state = 'committed', finished_at = $1, version_id = $2 WHERE id = $3")
            .bind(now.millis())
            .bind(existing_id)
            .bind(id.as_str())
            .execute(w.conn())
            .await?;
        sqlx::query("DELETE FROM staged WHERE txn_id = $1")
            .bind(id.as_str())
            .execute(w.conn())
            .await?;
        let manifest = load_manifest_by_id(w.conn(), existing_id)
            .await?
            .ok_or_else(|| corrupt("version vanished inside a transaction"))?;
        cat.commit(w).await?;
        return Ok(CommitOutcome::AlreadyCommitted(manifest));
    }

    let total: u64 = rec.files.iter().map(|f| f.size).sum();
    // The event lock from here to the commit: every row written below is this
    // transaction's own (its row is locked, its name too), so nothing waits under it.
    let seq = events::insert(
        &mut w,
        &events::NewEvent {
            at: now,
            kind: "committed",
            repo: repo.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            txn_id: Some(id.as_str().to_owned()),
            data: serde_json::json!({ "files": rec.files.len(), "size": total, "fingerprint": fingerprint }),
        },
    )
    .await?;
    let version_id: i64 = sqlx::query_scalar(
        "INSERT INTO versions (repo, name, version, auto_number, metadata, fingerprint, txn_id, seq, created_at,
                               last_access, total_size, file_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING id",
    )
    .bind(repo)
    .bind(name)
    .bind(version)
    .bind(rec.version.as_auto_number())
    .bind(rec.metadata.to_string())
    .bind(&fingerprint)
    .bind(id.as_str())
    .bind(seq)
    .bind(now.millis())
    .bind(now.millis())
    .bind(i64_of(total))
    .bind(i64_of(rec.files.len() as u64))
    .fetch_one(w.conn())
    .await?;
    sqlx::query(
        "INSERT INTO files (version_id, path, size, digest) SELECT $1, path, size, digest FROM staged WHERE txn_id = $2",
    )
    .bind(version_id)
    .bind(id.as_str())
    .execute(w.conn())
    .await?;
    sqlx::query("DELETE FROM staged WHERE txn_id = $1")
        .bind(id.as_str())
        .execute(w.conn())
        .await?;
    sqlx::query("UPDATE txns SET state = 'committed', finished_at = $1, version_id = $2 WHERE id = $3")
        .bind(now.millis())
        .bind(version_id)
        .bind(id.as_str())
        .execute(w.conn())
        .await?;
    sqlx::query(
        "INSERT INTO names (repo, name, versions) VALUES ($1, $2, 1)
         ON CONFLICT (repo, name) DO UPDATE SET versions = names.versions + 1",
    )
    .bind(repo)
    .bind(name)
    .execute(w.conn())
    .await?;
    cat.commit(w).await?;
    Ok(CommitOutcome::Committed(Manifest {
        repo: rec.repo,
        name: rec.name,
        version: rec.version,
        files: rec.files,
        metadata: rec.metadata,
        created_at: now,
        transaction: Some(id.clone()),
        seq,
    }))
}

pub(super) async fn abort_txn(cat: &PostgresCatalog, id: &TxnId) -> Result<Finished> {
    let mut w = cat.begin().await?;
    let rec = load_txn(w.conn(), id.as_str(), RowLock::Update)
        .await?
        .ok_or_else(|| not_found(id))?;
    match rec.state {
        TxnState::Aborted | TxnState::Expired => Ok(Finished::default()),
        TxnState::Committed => Err(Error::TxnNotOpen {
            id: id.clone(),
            state: rec.state,
        }),
        TxnState::Open => {
            let now = cat.now(&mut w).await?;
            let digests = finish_open_txn(&mut w, &rec, TxnState::Aborted, now).await?;
            cat.commit(w).await?;
            Ok(Finished {
                txns: vec![rec.id],
                staged_digests: digests,
                expired: 0,
            })
        }
    }
}

pub(super) async fn expire_txns(cat: &PostgresCatalog) -> Result<Finished> {
    let mut finished = Finished::default();
    let mut w = cat.begin().await?;
    let looked = cat.now(&mut w).await?;
    // Every replica's reaper runs this: each claims what no other holds right now (SKIP
    // LOCKED) and leaves the rest to the others or to its next round, never waiting.
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM txns WHERE state = 'open' AND expires_at <= $1 ORDER BY id LIMIT 1000
         FOR UPDATE SKIP LOCKED",
    )
    .bind(looked.millis())
    .fetch_all(w.conn())
    .await?;
    // Staged rows of finished transactions: this round's expiries and those noticed elsewhere.
    let leftovers = sqlx::query(
        "SELECT s.txn_id, s.path, s.digest FROM staged s JOIN txns t ON t.id = s.txn_id
         WHERE t.state <> 'open' LIMIT 10000 FOR UPDATE OF s SKIP LOCKED",
    )
    .fetch_all(w.conn())
    .await?;
    if due.is_empty() && leftovers.is_empty() {
        return Ok(finished);
    }
    let now = cat.now(&mut w).await?;
    for id in due {
        if let Some(mut rec) = load_txn(w.conn(), &id, RowLock::Update).await? {
            let staged: Vec<Digest> = rec.files.iter().map(|f| f.sha256).collect();
            if expire_if_due(&mut w, &mut rec, now).await? {
                // Its staged rows go now, with the other leftovers.
                sqlx::query("DELETE FROM staged WHERE txn_id = $1")
                    .bind(&id)
                    .execute(w.conn())
                    .await?;
                finished.staged_digests.extend(staged);
                finished.txns.push(rec.id);
                finished.expired += 1;
            }
        }
    }
    for r in &leftovers {
        let txn: String = r.try_get("txn_id")?;
        let path: String = r.try_get("path")?;
        sqlx::query("DELETE FROM staged WHERE txn_id = $1 AND path = $2")
            .bind(&txn)
            .bind(&path)
            .execute(w.conn())
            .await?;
        finished
            .staged_digests
            .push(columns::digest(&r.try_get::<String, _>("digest")?)?);
        let txn = columns::txn_id(&txn)?;
        if !finished.txns.contains(&txn) {
            finished.txns.push(txn);
        }
    }
    cat.commit(w).await?;
    Ok(finished)
}

pub(super) async fn prune_txns(cat: &PostgresCatalog, older_than: Duration) -> Result<u64> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    let res = sqlx::query("DELETE FROM txns WHERE state <> 'open' AND finished_at < $1")
        .bind(now.minus(older_than).millis())
        .execute(w.conn())
        .await?;
    sqlx::query("DELETE FROM idempotency i WHERE NOT EXISTS (SELECT 1 FROM txns t WHERE t.id = i.txn_id)")
        .execute(w.conn())
        .await?;
    cat.commit(w).await?;
    Ok(res.rows_affected())
}

pub(super) async fn open_txns(cat: &PostgresCatalog, repo: &RepoName, limit: u32) -> Result<Vec<TxnId>> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM txns WHERE state = 'open' AND repo = $1 ORDER BY created_at, id LIMIT $2")
            .bind(repo.as_str())
            .bind(i64::from(limit))
            .fetch_all(&cat.pool)
            .await?;
    ids.iter().map(|id| columns::txn_id(id)).collect()
}
