-- Listings page in commit order (the committed event's seq), which every catalog backend can
-- keep; row ids are a SQLite detail.
CREATE INDEX versions_by_name_seq ON versions (repo, name, seq);
DROP INDEX versions_by_name;
