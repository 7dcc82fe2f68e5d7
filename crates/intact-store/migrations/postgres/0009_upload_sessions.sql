-- Resumable uploads: a session per file being uploaded in pieces into an open transaction,
-- with the bytes received so far (`received`, the sum of its pieces' lengths, every one of
-- them durable in the blob store before it counts). A session lives as long as its
-- transaction is open; once `ended` (completed, discarded, or its transaction over) it takes
-- no more pieces, and its row stays until every piece of it is deleted from the blob store.
CREATE TABLE upload_sessions (
    id          TEXT PRIMARY KEY,
    txn_id      TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        BIGINT,
    sha256      TEXT,
    received    BIGINT NOT NULL,
    ended       BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX upload_sessions_by_txn ON upload_sessions (txn_id);
CREATE INDEX upload_sessions_ended ON upload_sessions (id) WHERE ended = 1;

-- The durable pieces of each session, in order (`start` is the offset of the first byte).
CREATE TABLE upload_pieces (
    session_id  TEXT NOT NULL,
    start       BIGINT NOT NULL,
    len         BIGINT NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    PRIMARY KEY (session_id, start)
);
