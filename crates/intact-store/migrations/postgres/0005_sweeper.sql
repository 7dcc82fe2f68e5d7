-- The background sweeper (see catalog/sweeper.rs): one row, holding who sweeps (a lease) and
-- how far the pass got (JSON), so a restart resumes instead of starting over.
CREATE TABLE sweeper (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO sweeper (id) VALUES (1);
