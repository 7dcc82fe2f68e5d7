//! Module zips from uploads and upstream proxies: checking and hashing arbitrary bytes must
//! never panic, a zip that checks out must also hash, and bad bytes are always a zip error,
//! never an I/O error (the front-ends answer I/O errors with a 5xx, and reading from memory
//! cannot fail).

#![no_main]

use std::io::Cursor;

use intact_go::{GoError, dirhash, zip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = zip::check_zip(Cursor::new(data), "example.com/m", "v1.0.0");
    let hashed = dirhash::hash_zip(Cursor::new(data));
    assert!(!matches!(checked, Err(GoError::Io(_))), "check_zip: {checked:?}");
    assert!(!matches!(hashed, Err(GoError::Io(_))), "hash_zip: {hashed:?}");
    if checked.is_ok() {
        assert!(hashed.is_ok(), "a valid module zip must hash: {hashed:?}");
    }
    let _ = intact_go::gomod::parse_module_path(data);
    let _ = intact_go::info::parse_info(data);
});
