-- intact catalog schema, version 1.
-- Invariant: a row in `versions` (with its `files`) appears in the same SQL transaction as
-- its `committed` event, and never before every blob it names is durable.

CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,   -- sha256, lower-case hex
    size        INTEGER NOT NULL,
    registered  INTEGER NOT NULL    -- ms since epoch of the last stage_file naming it
) WITHOUT ROWID;

CREATE TABLE versions (
    -- AUTOINCREMENT: ids are never reused after a delete, so listing cursors stay valid.
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    repo         TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    auto_number  INTEGER,           -- integer value when the version is a plain number
    metadata     TEXT NOT NULL,     -- JSON object
    fingerprint  TEXT NOT NULL,     -- content_fingerprint(files, metadata)
    txn_id       TEXT,
    seq          INTEGER NOT NULL,  -- the committed event
    created_at   INTEGER NOT NULL,
    last_access  INTEGER NOT NULL,
    total_size   INTEGER NOT NULL,
    file_count   INTEGER NOT NULL,
    UNIQUE (repo, name, version)
);
CREATE INDEX versions_by_name ON versions (repo, name, id);
CREATE INDEX versions_auto ON versions (repo, name, auto_number) WHERE auto_number IS NOT NULL;

CREATE TABLE files (
    version_id  INTEGER NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    PRIMARY KEY (version_id, path)
) WITHOUT ROWID;
CREATE INDEX files_by_digest ON files (digest);

-- Names with at least one committed version, for browsing without scanning versions.
CREATE TABLE names (
    repo      TEXT NOT NULL,
    name      TEXT NOT NULL,
    versions  INTEGER NOT NULL,
    PRIMARY KEY (repo, name)
) WITHOUT ROWID;

CREATE TABLE txns (
    id                   TEXT PRIMARY KEY,
    repo                 TEXT NOT NULL,
    name                 TEXT NOT NULL,
    version              TEXT NOT NULL,
    auto_number          INTEGER,
    metadata             TEXT NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('open', 'committed', 'aborted', 'expired')),
    idempotency_key      TEXT,
    request_fingerprint  TEXT NOT NULL,
    lease_ms             INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    finished_at          INTEGER,
    version_id           INTEGER
) WITHOUT ROWID;
-- The soft lock: at most one open transaction per (repo, name, version).
CREATE UNIQUE INDEX txns_lock ON txns (repo, name, version) WHERE state = 'open';
CREATE INDEX txns_open_expiry ON txns (expires_at) WHERE state = 'open';
CREATE INDEX txns_open_auto ON txns (repo, name, auto_number) WHERE state = 'open' AND auto_number IS NOT NULL;
CREATE INDEX txns_finished ON txns (finished_at) WHERE state <> 'open';

CREATE TABLE idempotency (
    repo    TEXT NOT NULL,
    key     TEXT NOT NULL,
    txn_id  TEXT NOT NULL,
    PRIMARY KEY (repo, key)
) WITHOUT ROWID;

CREATE TABLE staged (
    txn_id  TEXT NOT NULL REFERENCES txns (id) ON DELETE CASCADE,
    path    TEXT NOT NULL,
    size    INTEGER NOT NULL,
    digest  TEXT NOT NULL,
    PRIMARY KEY (txn_id, path)
) WITHOUT ROWID;
CREATE INDEX staged_by_digest ON staged (digest);

-- The event log. On SQLite there is one writer at a time, so AUTOINCREMENT order is commit order.
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    repo     TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL,
    txn_id   TEXT,
    data     TEXT NOT NULL
);
