//! The checksum database's tamper-evident log: record and node hashes, stored-hash indexes,
//! tree hashes, tiles, and reading hashes out of tiles *verified against a signed tree head*
//! (the model of `golang.org/x/mod/sumdb/tlog`, written afresh).
//!
//! The log is a Merkle tree over records (RFC 6962 hashing). Every node hash that is ever
//! final gets a "stored hash index"; tiles are runs of 2^H such hashes at one level, served
//! as `tile/H/L/N[.p/W]`. To trust a hash read from a tile, the tile must hash up, through
//! its parent tiles, to the tree hash of a signed tree head; [`TilePlan`] says which tiles
//! that takes and [`TilePlan::read_hashes`] checks them.

use std::collections::HashMap;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::BASE64 as STANDARD;

pub const HASH_SIZE: usize = 32;

/// A log hash (SHA-256).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogHash(pub [u8; HASH_SIZE]);

impl std::fmt::Debug for LogHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", STANDARD.encode(self.0))
    }
}

impl std::fmt::Display for LogHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", STANDARD.encode(self.0))
    }
}

impl LogHash {
    /// Parses the standard base64 form used in tree notes.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    fn from_slice(bytes: &[u8]) -> Self {
        let mut h = [0u8; HASH_SIZE];
        h.copy_from_slice(bytes);
        Self(h)
    }
}

/// Why log data could not be trusted or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("malformed tree note")]
    MalformedTree,
    #[error("malformed record data")]
    MalformedRecord,
    #[error("malformed tile path {0:?}")]
    MalformedTilePath(String),
    #[error("hash index {index} is not in a tree of {size} records")]
    NotInTree { index: u64, size: u64 },
    #[error("tile {path} has {got} bytes, not {want}")]
    TileSize { path: String, got: usize, want: usize },
    #[error("downloaded inconsistent tile: {0}")]
    InconsistentTile(String),
    #[error("the tree of {old} records is not a prefix of the tree of {new} records (a forked log)")]
    Forked { old: u64, new: u64 },
    #[error("a tree of {new} records cannot extend one of {old}")]
    Shrunk { old: u64, new: u64 },
    #[error("record {id} does not hash into the tree of {size} records")]
    RecordMismatch { id: u64, size: u64 },
}

/// The hash of a record (a leaf): SHA-256 of 0x00 and the data.
pub fn record_hash(data: &[u8]) -> LogHash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    LogHash(h.finalize().into())
}

/// The hash of an interior node: SHA-256 of 0x01 and both children.
pub fn node_hash(left: &LogHash, right: &LogHash) -> LogHash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    LogHash(h.finalize().into())
}

/// The largest power of two less than `n` (n > 1), and its log2.
fn maxpow2(n: u64) -> (u64, u32) {
    let mut l = 0;
    while 1u64 << (l + 1) < n {
        l += 1;
    }
    (1 << l, l)
}

/// The index, in the sequence of all stored hashes, of the hash of the subtree at `level`
/// numbered `n` within that level.
pub fn stored_hash_index(level: u32, mut n: u64) -> u64 {
    // The n-th hash at `level` is stored just after the last level-0 hash it covers.
    for _ in 0..level {
        n = 2 * n + 1;
    }
    let mut i = 0;
    let mut m = n;
    while m > 0 {
        i += m;
        m >>= 1;
    }
    i + u64::from(level)
}

/// The inverse of [`stored_hash_index`]: (level, n).
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // Estimate n from the index, then walk forward over the hashes stored after each record.
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    debug_assert!(index_n <= index);
    loop {
        let x = index_n + 1 + u64::from((n + 1).trailing_zeros());
        if x > index {
            break;
        }
        n += 1;
        index_n = x;
    }
    let level = (index - index_n) as u32;
    (level, n >> level)
}

/// The stored-hash indexes of the complete subtrees that make up records `lo..hi`.
fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = maxpow2(hi - lo + 1);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// Combines the hashes of the complete subtrees of `lo..hi` (from [`sub_tree_index`]).
fn sub_tree_hash(hashes: &[LogHash]) -> LogHash {
    let mut h = hashes[hashes.len() - 1];
    for left in hashes[..hashes.len() - 1].iter().rev() {
        h = node_hash(left, &h);
    }
    h
}

/// A signed tree head's content: the log's size and root hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub size: u64,
    pub hash: LogHash,
}

const TREE_PREFIX: &str = "go.sum database tree\n";

impl Tree {
    /// Parses a tree note's text: `go.sum database tree\nN\nHASH\n` (more lines may follow).
    pub fn parse(text: &str) -> Result<Self, LogError> {
        if !text.starts_with(TREE_PREFIX) || text.matches('\n').count() < 3 || text.len() > 1_000_000 {
            return Err(LogError::MalformedTree);
        }
        let mut lines = text.splitn(4, '\n');
        lines.next();
        let size_text = lines.next().ok_or(LogError::MalformedTree)?;
        let size: u64 = size_text.parse().map_err(|_| LogError::MalformedTree)?;
        if size.to_string() != size_text || size > i64::MAX as u64 {
            return Err(LogError::MalformedTree);
        }
        let hash = LogHash::parse(lines.next().ok_or(LogError::MalformedTree)?).ok_or(LogError::MalformedTree)?;
        Ok(Self { size, hash })
    }

    /// The tree note's text.
    pub fn format(&self) -> String {
        format!("{TREE_PREFIX}{}\n{}\n", self.size, self.hash)
    }

    /// The stored-hash indexes whose hashes make up this tree's hash, in order.
    pub fn hash_indexes(&self) -> Vec<u64> {
        let mut need = Vec::new();
        sub_tree_index(0, self.size, &mut need);
        need
    }
}

/// The hash of the first `size` records, from the hashes at [`Tree::hash_indexes`] of a tree
/// of that size.
pub fn tree_hash(size: u64, hashes: &[LogHash]) -> LogHash {
    if size == 0 {
        return LogHash::default();
    }
    sub_tree_hash(hashes)
}

/// Splits a lookup answer: the record id, its text, and what follows (the signed tree note).
pub fn parse_record(msg: &[u8]) -> Result<(u64, &[u8], &[u8]), LogError> {
    let nl = msg.iter().position(|&b| b == b'\n').ok_or(LogError::MalformedRecord)?;
    let id_text = std::str::from_utf8(&msg[..nl]).map_err(|_| LogError::MalformedRecord)?;
    let id: u64 = id_text.parse().map_err(|_| LogError::MalformedRecord)?;
    if id > i64::MAX as u64 {
        return Err(LogError::MalformedRecord);
    }
    let msg = &msg[nl + 1..];
    let end = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or(LogError::MalformedRecord)?;
    let (text, rest) = (&msg[..end + 1], &msg[end + 2..]);
    if !is_valid_record_text(text) {
        return Err(LogError::MalformedRecord);
    }
    Ok((id, text, rest))
}

/// One record of a data tile: its id when the tile carries one, and its text.
pub type DataRecord<'a> = (Option<u64>, &'a [u8]);

/// Splits a data tile into its records' texts, with each record's id where the tile carries
/// one. Databases write a record as its text and a blank line; older servers put an `ID` line
/// before each text, newer ones (sum.golang.org) do not. Both are read.
pub fn split_data_tile(mut data: &[u8]) -> Result<Vec<DataRecord<'_>>, LogError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let end = data
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or(LogError::MalformedRecord)?;
        let mut text = &data[..end + 1];
        data = &data[end + 2..];
        let first_line = text.iter().position(|&b| b == b'\n').map_or(text, |i| &text[..i]);
        let mut id = None;
        if !first_line.is_empty() && first_line.iter().all(u8::is_ascii_digit) {
            let digits = std::str::from_utf8(first_line).map_err(|_| LogError::MalformedRecord)?;
            id = Some(digits.parse().map_err(|_| LogError::MalformedRecord)?);
            text = &text[first_line.len() + 1..];
        }
        if !is_valid_record_text(text) {
            return Err(LogError::MalformedRecord);
        }
        out.push((id, text));
    }
    Ok(out)
}

/// Record text is UTF-8 without control characters but newlines, no blank line, and ends in
/// a newline.
fn is_valid_record_text(text: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let mut last = '\0';
    for c in text.chars() {
        if (c < '\u{20}' && c != '\n') || (last == '\n' && c == '\n') {
            return false;
        }
        last = c;
    }
    last == '\n'
}

/// A tile: `2^height` hashes (or `width` of them, a partial tile) at tiling level `level`
/// (level -1 is the record data itself), number `n` within that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    pub height: u32,
    pub level: i32,
    pub n: u64,
    pub width: u32,
}

const PATH_BASE: u64 = 1000;

impl Tile {
    fn full_width(&self) -> u32 {
        1 << self.height
    }

    pub fn is_full(&self) -> bool {
        self.width == self.full_width()
    }

    /// The tile's path below the database URL: `tile/H/L/NNN[.p/W]`, with N written in
    /// groups of three digits (`x001/234`).
    pub fn path(&self) -> String {
        let mut n = self.n;
        let mut n_text = format!("{:03}", n % PATH_BASE);
        while n >= PATH_BASE {
            n /= PATH_BASE;
            n_text = format!("x{:03}/{n_text}", n % PATH_BASE);
        }
        let partial = if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        let level = if self.level == -1 {
            "data".to_owned()
        } else {
            self.level.to_string()
        };
        format!("tile/{}/{level}/{n_text}{partial}", self.height)
    }

    /// Parses a tile path; only the one canonical spelling of each tile is accepted.
    pub fn parse_path(path: &str) -> Result<Self, LogError> {
        let bad = || LogError::MalformedTilePath(path.chars().take(200).collect());
        let mut parts: Vec<&str> = path.split('/').collect();
        if parts.len() < 4 || parts[0] != "tile" || parts.len() > 32 {
            return Err(bad());
        }
        let height: u32 = parts[1].parse().map_err(|_| bad())?;
        if !(1..=30).contains(&height) {
            return Err(bad());
        }
        let level: i32 = if parts[2] == "data" {
            -1
        } else {
            parts[2].parse().map_err(|_| bad())?
        };
        if !(-1..64).contains(&level) {
            return Err(bad());
        }
        let mut width = 1u32 << height;
        let last_dir = parts[parts.len() - 2];
        if let Some(stripped) = last_dir.strip_suffix(".p") {
            let w: u32 = parts[parts.len() - 1].parse().map_err(|_| bad())?;
            if w == 0 || w >= width {
                return Err(bad());
            }
            width = w;
            let at = parts.len() - 2;
            parts[at] = stripped;
            parts.pop();
        }
        let mut n: u64 = 0;
        for part in &parts[3..] {
            let digits = part.strip_prefix('x').unwrap_or(part);
            let nn: u64 = digits.parse().map_err(|_| bad())?;
            if nn >= PATH_BASE {
                return Err(bad());
            }
            n = n
                .checked_mul(PATH_BASE)
                .and_then(|n| n.checked_add(nn))
                .ok_or_else(bad)?;
        }
        let tile = Self {
            height,
            level,
            n,
            width,
        };
        if tile.path() != path {
            return Err(bad());
        }
        Ok(tile)
    }

    /// The number of bytes of this tile's data (hashes: 32 each; a data tile holds records
    /// and has no fixed size).
    pub fn hash_bytes(&self) -> usize {
        self.width as usize * HASH_SIZE
    }
}

/// The tile of `height` holding the hash at stored index `index`, and the byte range of that
/// hash's subtree within the tile's data.
fn tile_for_index(height: u32, index: u64) -> (Tile, usize, usize) {
    let (level, n) = split_stored_hash_index(index);
    let tile_level = level / height;
    let level_in_tile = level - tile_level * height;
    let tile_n = (n << level_in_tile) >> height;
    let n_in_tile = n - ((tile_n << height) >> level_in_tile);
    let width = ((n_in_tile + 1) << level_in_tile) as u32;
    let tile = Tile {
        height,
        level: tile_level as i32,
        n: tile_n,
        width,
    };
    let start = ((n_in_tile << level_in_tile) as usize) * HASH_SIZE;
    let end = (((n_in_tile + 1) << level_in_tile) as usize) * HASH_SIZE;
    (tile, start, end)
}

/// The hash at stored index `index`, computed from `tile`'s data.
fn hash_from_tile(tile: &Tile, data: &[u8], index: u64) -> Result<LogHash, LogError> {
    if data.len() < tile.hash_bytes() {
        return Err(LogError::TileSize {
            path: tile.path(),
            got: data.len(),
            want: tile.hash_bytes(),
        });
    }
    let (t1, start, end) = tile_for_index(tile.height, index);
    if tile.level != t1.level || tile.n != t1.n || tile.width < t1.width {
        return Err(LogError::InconsistentTile(format!(
            "index {index} is in {} not {}",
            t1.path(),
            tile.path()
        )));
    }
    Ok(tile_hash(&data[start..end]))
}

/// The hash of the subtree whose bottom row is `data` (a power of two of hashes).
fn tile_hash(data: &[u8]) -> LogHash {
    if data.len() == HASH_SIZE {
        return LogHash::from_slice(data);
    }
    let half = data.len() / 2;
    node_hash(&tile_hash(&data[..half]), &tile_hash(&data[half..]))
}

/// `tile`'s ancestor `k` tile levels up, trimmed to what a tree of `size` records holds;
/// `None` when the tree has no such tile.
fn tile_parent(tile: Tile, k: u32, size: u64) -> Option<Tile> {
    let mut t = tile;
    t.level += k as i32;
    t.n >>= k * t.height;
    t.width = 1 << t.height;
    let max = size >> (t.level as u32 * t.height);
    if (t.n << t.height) + u64::from(t.width) >= max {
        if t.n << t.height >= max {
            return None;
        }
        t.width = (max - (t.n << t.height)) as u32;
    }
    Some(t)
}

/// Which tiles must be read to trust the hashes at some stored indexes, given a signed tree:
/// the tiles holding the tree's own subtree hashes (checked against the tree hash), and for
/// each wanted index its tile and the ancestors up to one already checked.
#[derive(Debug, Clone)]
pub struct TilePlan {
    tree: Tree,
    /// Every tile to read, in order; the first `roots` hold the tree's subtree hashes.
    tiles: Vec<Tile>,
    roots: usize,
    /// The tree's subtree hash indexes and the tile (position in `tiles`) of each.
    tree_indexes: Vec<(u64, usize)>,
    /// Each wanted index and the tile it is read from.
    wanted: Vec<(u64, usize)>,
}

impl TilePlan {
    /// Plans reading `indexes` out of the tiles of `height` of `tree`.
    pub fn new(tree: Tree, height: u32, indexes: &[u64]) -> Result<Self, LogError> {
        let mut order: HashMap<Tile, usize> = HashMap::new();
        let mut tiles = Vec::new();
        let mut tree_indexes = Vec::new();
        for x in tree.hash_indexes() {
            let (tile, _, _) = tile_for_index(height, x);
            let tile = tile_parent(tile, 0, tree.size).ok_or(LogError::NotInTree {
                index: x,
                size: tree.size,
            })?;
            let at = *order.entry(tile).or_insert_with(|| {
                tiles.push(tile);
                tiles.len() - 1
            });
            tree_indexes.push((x, at));
        }
        let roots = tiles.len();
        let mut wanted = Vec::new();
        let end = stored_hash_index(0, tree.size);
        for &x in indexes {
            if x >= end {
                return Err(LogError::NotInTree {
                    index: x,
                    size: tree.size,
                });
            }
            let (tile, _, _) = tile_for_index(height, x);
            // Walk up until a tile already planned; plan the ones below it.
            let mut k = 0;
            loop {
                let parent = tile_parent(tile, k, tree.size).ok_or(LogError::NotInTree {
                    index: x,
                    size: tree.size,
                })?;
                if order.contains_key(&parent) {
                    break;
                }
                k += 1;
            }
            for level in (0..k).rev() {
                let parent = tile_parent(tile, level, tree.size).ok_or(LogError::NotInTree {
                    index: x,
                    size: tree.size,
                })?;
                if !parent.is_full() {
                    return Err(LogError::InconsistentTile(format!(
                        "bad tile math: {} in a tree of {}",
                        parent.path(),
                        tree.size
                    )));
                }
                order.insert(parent, tiles.len());
                tiles.push(parent);
            }
            let at_tile = tile_parent(tile, 0, tree.size).and_then(|t| order.get(&t).copied());
            let at_tile = at_tile.ok_or(LogError::NotInTree {
                index: x,
                size: tree.size,
            })?;
            wanted.push((x, at_tile));
        }
        Ok(Self {
            tree,
            tiles,
            roots,
            tree_indexes,
            wanted,
        })
    }

    /// The tiles to read, in the order [`TilePlan::read_hashes`] takes their data.
    pub fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    /// Checks the tiles' data (`data[i]` for `tiles()[i]`) against the tree hash and each
    /// other, and returns the wanted hashes in the order asked for.
    pub fn read_hashes(&self, data: &[&[u8]]) -> Result<Vec<LogHash>, LogError> {
        if data.len() != self.tiles.len() {
            return Err(LogError::InconsistentTile(format!(
                "{} tiles read, {} planned",
                data.len(),
                self.tiles.len()
            )));
        }
        for (tile, bytes) in self.tiles.iter().zip(data) {
            if bytes.len() != tile.hash_bytes() {
                return Err(LogError::TileSize {
                    path: tile.path(),
                    got: bytes.len(),
                    want: tile.hash_bytes(),
                });
            }
        }
        // The tree's subtree hashes, from the root tiles, must make up the signed tree hash.
        let mut subtree_hashes = Vec::with_capacity(self.tree_indexes.len());
        for &(x, at) in &self.tree_indexes {
            subtree_hashes.push(hash_from_tile(&self.tiles[at], data[at], x)?);
        }
        if tree_hash(self.tree.size, &subtree_hashes) != self.tree.hash {
            return Err(LogError::InconsistentTile(format!(
                "the tiles do not hash to the tree of {} records",
                self.tree.size
            )));
        }
        // Every other tile must hash to the hash its parent tile holds for it.
        let position: HashMap<&Tile, usize> = self.tiles.iter().enumerate().map(|(i, t)| (t, i)).collect();
        for (i, tile) in self.tiles.iter().enumerate().skip(self.roots) {
            let parent = tile_parent(*tile, 1, self.tree.size)
                .and_then(|p| position.get(&p).map(|&j| (p, j)))
                .ok_or_else(|| LogError::InconsistentTile(format!("no parent tile for {}", tile.path())))?;
            let (p, j) = parent;
            let want = hash_from_tile(&p, data[j], stored_hash_index(p.level as u32 * p.height, tile.n))?;
            if want != tile_hash(data[i]) {
                return Err(LogError::InconsistentTile(tile.path()));
            }
        }
        self.wanted
            .iter()
            .map(|&(x, at)| hash_from_tile(&self.tiles[at], data[at], x))
            .collect()
    }
}

/// The stored-hash index of record `id`'s leaf hash.
pub fn record_index(id: u64) -> u64 {
    stored_hash_index(0, id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sumdb::note::{NoteError, Verifier};

    /// A log built by golang.org/x/mod/sumdb's own tlog and note packages (testdata/sumdb/gen.go).
    #[derive(serde::Deserialize)]
    struct GoLog {
        verifier: String,
        records: Vec<String>,
        trees: BTreeMap<String, String>,
        forked_trees: BTreeMap<String, String>,
        tiles: HashMap<String, String>,
        lookup_42: String,
    }

    fn go_log() -> GoLog {
        serde_json::from_str(include_str!("../../testdata/sumdb/log.json")).unwrap()
    }

    fn tree(log: &GoLog, note: &str) -> Tree {
        let verifier = Verifier::parse(&log.verifier).unwrap();
        Tree::parse(verifier.open(note.as_bytes()).unwrap()).unwrap()
    }

    fn trees(log: &GoLog) -> Vec<Tree> {
        let mut t: Vec<Tree> = log.trees.values().map(|n| tree(log, n)).collect();
        t.sort_by_key(|t| t.size);
        t
    }

    fn tile_data(log: &GoLog, plan: &TilePlan) -> Vec<Vec<u8>> {
        plan.tiles()
            .iter()
            .map(|t| {
                let b64 = log
                    .tiles
                    .get(&t.path())
                    .unwrap_or_else(|| panic!("no tile {}", t.path()));
                STANDARD.decode(b64).unwrap()
            })
            .collect()
    }

    fn read(plan: &TilePlan, data: &[Vec<u8>]) -> Result<Vec<LogHash>, LogError> {
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        plan.read_hashes(&refs)
    }

    #[test]
    fn stored_hash_indexes_split_back() {
        for index in 0..5000 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index, "{index}");
        }
        assert_eq!(stored_hash_index(0, 0), 0);
        assert_eq!(stored_hash_index(0, 1), 1);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(0, 2), 3);
    }

    #[test]
    fn records_read_from_tiles_match_what_go_logged() {
        let log = go_log();
        for t in trees(&log) {
            let ids: Vec<u64> = [0, 1, 2, 5, 42, 255, 256, 599, 999, 1000]
                .into_iter()
                .filter(|&id| id < t.size)
                .collect();
            let indexes: Vec<u64> = ids.iter().map(|&id| record_index(id)).collect();
            let plan = TilePlan::new(t, 2, &indexes).unwrap();
            let hashes = read(&plan, &tile_data(&log, &plan)).unwrap();
            for (id, h) in ids.iter().zip(hashes) {
                assert_eq!(
                    h,
                    record_hash(log.records[*id as usize].as_bytes()),
                    "record {id} in {}",
                    t.size
                );
            }
            assert!(
                TilePlan::new(t, 2, &[record_index(t.size)]).is_err(),
                "a record past the tree"
            );
        }
    }

    #[test]
    fn each_tree_is_a_prefix_of_every_later_one_and_a_fork_is_caught() {
        let log = go_log();
        let all = trees(&log);
        for (i, old) in all.iter().enumerate() {
            for new in &all[i..] {
                let plan = TilePlan::new(*new, 2, &old.hash_indexes()).unwrap();
                let hashes = read(&plan, &tile_data(&log, &plan)).unwrap();
                assert_eq!(tree_hash(old.size, &hashes), old.hash, "{} in {}", old.size, new.size);
            }
        }
        let main_1000 = all.iter().find(|t| t.size == 1000).copied().unwrap();
        for (size, note) in &log.forked_trees {
            let forked = tree(&log, note);
            let plan = TilePlan::new(main_1000, 2, &forked.hash_indexes()).unwrap();
            let hashes = read(&plan, &tile_data(&log, &plan)).unwrap();
            let same = tree_hash(forked.size, &hashes) == forked.hash;
            // The fork shares the first 500 records.
            assert_eq!(same, forked.size <= 500, "fork of size {size}");
        }
    }

    #[test]
    fn a_changed_byte_in_any_tile_is_caught() {
        let log = go_log();
        for t in trees(&log).into_iter().filter(|t| [257, 1000, 1001].contains(&t.size)) {
            let plan = TilePlan::new(t, 2, &[record_index(42), record_index(t.size - 1)]).unwrap();
            let good = tile_data(&log, &plan);
            for which in 0..good.len() {
                for at in [0, good[which].len() / 2, good[which].len() - 1] {
                    let mut bad = good.clone();
                    bad[which][at] ^= 1;
                    assert!(
                        read(&plan, &bad).is_err(),
                        "tile {} byte {at} in {}",
                        plan.tiles()[which].path(),
                        t.size
                    );
                }
                let mut short = good.clone();
                short[which].pop();
                assert!(matches!(read(&plan, &short), Err(LogError::TileSize { .. })));
            }
        }
    }

    #[test]
    fn a_lookup_answer_splits_into_record_and_signed_tree() {
        let log = go_log();
        let (id, text, rest) = parse_record(log.lookup_42.as_bytes()).unwrap();
        assert_eq!((id, std::str::from_utf8(text).unwrap()), (42, log.records[42].as_str()));
        let verifier = Verifier::parse(&log.verifier).unwrap();
        assert_eq!(Tree::parse(verifier.open(rest).unwrap()).unwrap().size, 1000);
        for bad in ["", "x\nabc\n\n", "42\nno blank line\n", "42\na\u{1}b\n\n", "-1\na\n\n"] {
            assert!(parse_record(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn notes_are_refused_when_tampered_unsigned_or_malformed() {
        let log = go_log();
        let verifier = Verifier::parse(&log.verifier).unwrap();
        assert_eq!(verifier.name(), "sum.test.example");
        let note = &log.trees["1000"];
        assert!(verifier.open(note.as_bytes()).is_ok());
        let tampered = note.replacen("1000", "1001", 1);
        assert_eq!(
            verifier.open(tampered.as_bytes()),
            Err(NoteError::BadSignature("sum.test.example".into()))
        );
        // The same key under another name: the note names this database only.
        let key = STANDARD.decode("AbHE3xwXzOkKA81MBX/HTU4u4k3f4qjJxf2NCkWh8ILz").unwrap();
        let mut h = Sha256::new();
        h.update(b"other\n");
        h.update(&key);
        let hash = h.finalize();
        let other = format!(
            "other+{}+AbHE3xwXzOkKA81MBX/HTU4u4k3f4qjJxf2NCkWh8ILz",
            hex::encode(&hash[..4])
        );
        let other = Verifier::parse(&other).unwrap();
        assert_eq!(other.open(note.as_bytes()), Err(NoteError::Unsigned("other".into())));
        for bad in [
            "",
            "text\n",
            "text\n\nno dash\n",
            "text\n\n— name !!!\n",
            "te\u{1}xt\n\n— a AAAAAAA=\n",
        ] {
            assert!(verifier.open(bad.as_bytes()).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "name",
            "name+1234+AQ==",
            "sum.test.example+50a26493+AbHE3xwXzOkKA81MBX/HTU4u4k3f4qjJxf2NCkWh8ILz",
            "sum.test.example+50a26492+AbHE3xwXzOkKA81MBX/HTU4u4k3f4qjJxf2NCkWh8IL",
            "a b+50a26492+AbHE3xwXzOkKA81MBX/HTU4u4k3f4qjJxf2NCkWh8ILz",
        ] {
            assert!(Verifier::parse(bad).is_err(), "{bad:?}");
        }
        // The public database's key, as the go command knows it (its base64 holds '+').
        let public = Verifier::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8").unwrap();
        assert_eq!(public.name(), "sum.golang.org");
        assert!(
            Verifier::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ko0pSYnJ4MBwMvRRo").is_err(),
            "45 base64 characters are not a key"
        );
    }

    #[test]
    fn data_tiles_are_read_with_and_without_record_ids() {
        let with_ids =
            b"7\nexample.com/a v1.0.0 h1:x=\n\n8\nexample.com/b v1.0.0 h1:y=\nexample.com/b v1.0.0/go.mod h1:z=\n\n";
        let without =
            b"example.com/a v1.0.0 h1:x=\n\nexample.com/b v1.0.0 h1:y=\nexample.com/b v1.0.0/go.mod h1:z=\n\n";
        let a = split_data_tile(with_ids).unwrap();
        let b = split_data_tile(without).unwrap();
        assert_eq!(a.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![Some(7), Some(8)]);
        assert_eq!(b.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![None, None]);
        let texts = |v: &[DataRecord<'_>]| v.iter().map(|(_, t)| t.to_vec()).collect::<Vec<_>>();
        assert_eq!(texts(&a), texts(&b));
        assert_eq!(
            b[1].1,
            b"example.com/b v1.0.0 h1:y=\nexample.com/b v1.0.0/go.mod h1:z=\n"
        );
        for bad in [&b"no blank line\n"[..], b"a\x01b\n\n"] {
            assert!(split_data_tile(bad).is_err(), "{bad:?}");
        }
        assert!(split_data_tile(b"").unwrap().is_empty());
    }

    #[test]
    fn tile_paths_have_one_spelling() {
        let log = go_log();
        for path in log.tiles.keys() {
            assert_eq!(&Tile::parse_path(path).unwrap().path(), path);
        }
        let t = Tile {
            height: 8,
            level: 0,
            n: 1_234_067,
            width: 256,
        };
        assert_eq!(t.path(), "tile/8/0/x001/x234/067");
        assert_eq!(Tile::parse_path(&t.path()).unwrap(), t);
        let data = Tile {
            level: -1,
            width: 5,
            ..t
        };
        assert_eq!(data.path(), "tile/8/data/x001/x234/067.p/5");
        assert_eq!(Tile::parse_path(&data.path()).unwrap(), data);
        for bad in [
            "tile/8/0/1234",
            "tile/8/0/x001/x234/67",
            "tile/8/0/001.p/256",
            "tile/8/0/001.p/0",
            "tile/0/0/001",
            "tile/31/0/001",
            "tile/8/64/001",
            "tile/8/-1/001",
            "tile/8/0/0a1",
            "tile/8/0",
            "tiles/8/0/001",
            "tile/8/0/x000/001",
        ] {
            assert!(Tile::parse_path(bad).is_err(), "{bad}");
        }
    }
}
