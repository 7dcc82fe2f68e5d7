//! Module zips from uploads and upstream proxies: checking and hashing arbitrary bytes must
//! never panic, and a zip that checks out must also hash.

#![no_main]

use std::io::Cursor;

use intact_go::{dirhash, zip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = zip::check_zip(Cursor::new(data), "example.com/m", "v1.0.0");
    let hashed = dirhash::hash_zip(Cursor::new(data));
    if checked.is_ok() {
        assert!(hashed.is_ok(), "a valid module zip must hash: {hashed:?}");
    }
    let _ = intact_go::gomod::parse_module_path(data);
    let _ = intact_go::info::parse_info(data);
});
