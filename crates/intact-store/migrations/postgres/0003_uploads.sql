-- Uploads streaming into a transaction on some process, each with a short lease its process
-- renews while the upload is alive (a commit is refused while any counts).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    txn_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_txn ON uploads (txn_id);
