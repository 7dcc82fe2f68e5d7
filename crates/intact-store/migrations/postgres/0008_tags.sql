-- Tags: movable pointers from a name to one of its versions, moved by compare-and-swap.
-- Invariant: a row of `tags` changes only in the same SQL transaction as the `tagged` or
-- `untagged` event that tells it and the `tag_moves` row that keeps it in the history.
CREATE TABLE tags (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    version TEXT NOT NULL,
    moved_at BIGINT NOT NULL,
    moved_by TEXT,
    PRIMARY KEY (repo, name, tag)
);

CREATE TABLE tag_moves (
    seq BIGINT PRIMARY KEY,
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    version TEXT,
    previous TEXT,
    at BIGINT NOT NULL,
    moved_by TEXT
);
CREATE INDEX tag_moves_by_tag ON tag_moves (repo, name, tag, seq);
