-- intact catalog schema for PostgreSQL, version 1 (the shape SQLite reached after its
-- migrations 1-3). Applied by sqlx's migrator, which holds an advisory lock meanwhile, so
-- replicas starting together apply it once.
-- Invariant: a row in `versions` (with its `files`) appears in the same SQL transaction as
-- its `committed` event, and never before every blob it names is durable.
-- Text that is compared or sorted (names, digests, cursors) uses the "C" collation: byte
-- order, the same on every server and the same as the embedded catalog's.

CREATE TABLE blobs (
    digest      TEXT COLLATE "C" PRIMARY KEY,  -- sha256, lower-case hex
    size        BIGINT NOT NULL,
    registered  BIGINT NOT NULL                -- ms since epoch of the last stage_file naming it
);

CREATE TABLE versions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo         TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    auto_number  BIGINT,            -- integer value when the version is a plain number
    metadata     TEXT NOT NULL,     -- JSON object, as written
    fingerprint  TEXT NOT NULL,     -- content_fingerprint(files, metadata)
    txn_id       TEXT,
    seq          BIGINT NOT NULL,   -- the committed event
    created_at   BIGINT NOT NULL,
    last_access  BIGINT NOT NULL,
    total_size   BIGINT NOT NULL,
    file_count   BIGINT NOT NULL,
    UNIQUE (repo, name, version)
);
-- Listings page in commit order (the committed event's seq).
CREATE INDEX versions_by_name_seq ON versions (repo, name, seq);
CREATE INDEX versions_auto ON versions (repo, name, auto_number) WHERE auto_number IS NOT NULL;
-- Least-recently-used eviction of proxy (staged) versions walks this index.
CREATE INDEX versions_lru ON versions (repo, last_access, id);

CREATE TABLE files (
    version_id  BIGINT NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    path        TEXT COLLATE "C" NOT NULL,
    size        BIGINT NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (version_id, path)
);
CREATE INDEX files_by_digest ON files (digest);

-- Names with at least one committed version, for browsing without scanning versions.
CREATE TABLE names (
    repo      TEXT COLLATE "C" NOT NULL,
    name      TEXT COLLATE "C" NOT NULL,
    versions  BIGINT NOT NULL,
    PRIMARY KEY (repo, name)
);

CREATE TABLE txns (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    repo                 TEXT COLLATE "C" NOT NULL,
    name                 TEXT COLLATE "C" NOT NULL,
    version              TEXT COLLATE "C" NOT NULL,
    auto_number          BIGINT,
    metadata             TEXT NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('open', 'committed', 'aborted', 'expired')),
    idempotency_key      TEXT,
    request_fingerprint  TEXT NOT NULL,
    lease_ms             BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    finished_at          BIGINT,
    version_id           BIGINT
);
-- The soft lock: at most one open transaction per (repo, name, version), across replicas.
CREATE UNIQUE INDEX txns_lock ON txns (repo, name, version) WHERE state = 'open';
CREATE INDEX txns_open_expiry ON txns (expires_at) WHERE state = 'open';
CREATE INDEX txns_open_auto ON txns (repo, name, auto_number) WHERE state = 'open' AND auto_number IS NOT NULL;
CREATE INDEX txns_finished ON txns (finished_at) WHERE state <> 'open';

CREATE TABLE idempotency (
    repo    TEXT COLLATE "C" NOT NULL,
    key     TEXT COLLATE "C" NOT NULL,
    txn_id  TEXT NOT NULL,
    PRIMARY KEY (repo, key)
);

CREATE TABLE staged (
    txn_id  TEXT COLLATE "C" NOT NULL REFERENCES txns (id) ON DELETE CASCADE,
    path    TEXT COLLATE "C" NOT NULL,
    size    BIGINT NOT NULL,
    digest  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (txn_id, path)
);
CREATE INDEX staged_by_digest ON staged (digest);

-- The event log. Sequence numbers are taken at insert, not at commit, so the catalog inserts
-- events only while holding one transaction-scoped advisory lock (events.rs): seq order is
-- then commit order, and a follower that read up to N never later finds a smaller number.
CREATE TABLE events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    repo     TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL,
    txn_id   TEXT,
    data     TEXT NOT NULL
);
