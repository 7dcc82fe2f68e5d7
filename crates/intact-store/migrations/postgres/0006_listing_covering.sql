-- Listings walk (repo, name, seq) and read only these columns. With them in the index a page
-- can be an index-only scan, instead of a visit to every row in the table (whose metadata
-- makes rows wide).
CREATE INDEX versions_listing ON versions (repo, name, seq) INCLUDE (version, created_at, total_size, file_count);
DROP INDEX versions_by_name_seq;
