-- Least-recently-used eviction of proxy (staged) versions walks this index.
CREATE INDEX versions_lru ON versions (repo, last_access);
