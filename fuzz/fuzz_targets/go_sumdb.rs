//! What a checksum database (or anyone on the way to it) sends, and a proxy's allow/deny
//! rules: signed notes, tree notes, lookup answers, tile paths and tile data checked against a
//! tree, and `GLOB[@CONSTRAINT]` rules. None of them may panic, and whatever parses must
//! print back as it was read (tile paths, trees) or behave as the rules say.
//!
//! Input: one selector byte, then the text.
#![no_main]

use intact_go::rules::Rules;
use intact_go::sumdb::note::Verifier;
use intact_go::sumdb::tlog::{self, LogHash, Tile, TilePlan, Tree};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            if let Ok(verifier) = Verifier::parse(KEY) {
                let _ = verifier.open(rest);
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(tree) = Tree::parse(text) {
                assert!(text.starts_with(&tree.format()), "{text:?} read as {tree:?}");
            }
            let _ = Verifier::parse(text);
        }
        2 => {
            if let Ok((_, text, _)) = tlog::parse_record(rest) {
                assert!(text.ends_with(b"\n"));
            }
        }
        3 => {
            let Ok(path) = std::str::from_utf8(rest) else { return };
            if let Ok(tile) = Tile::parse_path(path) {
                assert_eq!(tile.path(), path);
            }
        }
        4 => {
            // A tree of up to 2^16 records and one record in it, its tiles taken from the
            // input: whatever they hold, reading either fails or returns one hash.
            let [a, b, h, rest @ ..] = rest else { return };
            let size = u64::from(u16::from_le_bytes([*a, *b])) + 1;
            let height = u32::from(*h % 8) + 1;
            let tree = Tree {
                size,
                hash: LogHash(tlog::record_hash(rest).0),
            };
            let Ok(plan) = TilePlan::new(tree, height, &[tlog::record_index(size / 2)]) else {
                return;
            };
            let tiles: Vec<&[u8]> = plan
                .tiles()
                .iter()
                .map(|t| rest.get(..t.hash_bytes()).unwrap_or(rest))
                .collect();
            if let Ok(hashes) = plan.read_hashes(&tiles) {
                assert_eq!(hashes.len(), 1);
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            let mut parts = text.split('\n');
            let rules: Vec<String> = parts.next().unwrap_or_default().split(' ').map(str::to_owned).collect();
            let module = parts.next().unwrap_or_default();
            let version = parts.next().unwrap_or_default();
            if let Ok(deny) = Rules::parse(&[], &rules) {
                // A module refused as a whole is refused at every version.
                if deny.check_module(module).is_err() {
                    assert!(deny.check_version(module, version).is_err());
                }
            }
        }
    }
});
