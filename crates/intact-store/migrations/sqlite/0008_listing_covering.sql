-- Listings walk (repo, name, seq) and read only these columns. With them in the index a page
-- is one range scan of the index, instead of a lookup of every row in the table (whose
-- metadata makes rows wide).
CREATE INDEX versions_listing ON versions (repo, name, seq, version, created_at, total_size, file_count);
DROP INDEX versions_by_name_seq;
