-- Flights: upstream work shared by every process on the catalog (see catalog/flight.rs).
CREATE TABLE flights (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    running INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    failure_kind TEXT,
    failure_message TEXT,
    failed_at INTEGER,
    failed_until INTEGER
);
