-- Flights: upstream work shared by every replica (see catalog/flight.rs).
CREATE TABLE flights (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    running BOOLEAN NOT NULL,
    expires_at BIGINT NOT NULL,
    failure_kind TEXT,
    failure_message TEXT,
    failed_at BIGINT,
    failed_until BIGINT
);
