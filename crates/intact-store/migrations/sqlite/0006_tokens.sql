-- API tokens (see tokens.rs): only the sha256 of each secret is kept. Revoked tokens stay,
-- marked, so the history is kept and a name is never reused.
CREATE TABLE tokens (
    name           TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL UNIQUE,
    scopes         TEXT NOT NULL,     -- JSON array of "REPO:ACCESS"
    created_at     INTEGER NOT NULL,  -- ms since epoch
    expires_at     INTEGER,
    revoked_at     INTEGER
) WITHOUT ROWID;

-- The token that opened a transaction (NULL: anonymous, or intact's own workers), so the open
-- transactions of one token can be counted and limited.
ALTER TABLE txns ADD COLUMN owner TEXT;
CREATE INDEX txns_open_by_owner ON txns (owner) WHERE state = 'open';
