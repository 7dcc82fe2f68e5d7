-- Webhooks and their delivery cursors (see src/hooks.rs).
CREATE TABLE hooks (
    name TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    cursor BIGINT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_attempt_at BIGINT,
    last_status BIGINT,
    last_error TEXT,
    holder TEXT,
    held_until BIGINT
);
