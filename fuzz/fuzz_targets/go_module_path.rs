//! Module paths and versions from URLs: checking, escaping and unescaping must never panic,
//! and must round-trip.

#![no_main]

use intact_go::{module_path, pattern, semver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    // A path that checks out escapes, and the escaped form decodes back to it.
    if module_path::check_path(s).is_ok() {
        let escaped = module_path::escape_path(s).expect("valid path must escape");
        assert!(!escaped.bytes().any(|c| c.is_ascii_uppercase()));
        assert_eq!(
            module_path::unescape_path(&escaped).expect("escaped path must decode"),
            s
        );
        assert!(
            module_path::check_import_path(s).is_ok(),
            "module paths are import paths"
        );
    } else {
        assert!(module_path::escape_path(s).is_err());
    }
    // Anything that decodes is the one escaped spelling of a valid path.
    if let Ok(path) = module_path::unescape_path(s) {
        assert!(module_path::check_path(&path).is_ok());
        assert_eq!(module_path::escape_path(&path).expect("decoded path must escape"), s);
    }
    if module_path::check_import_path(s).is_ok() {
        assert!(module_path::check_file_path(s).is_ok(), "import paths are file paths");
    }

    // Versions travel escaped too.
    if let Ok(escaped) = module_path::escape_version(s) {
        assert_eq!(
            module_path::unescape_version(&escaped).expect("escaped version must decode"),
            s
        );
    }
    if let Ok(v) = module_path::unescape_version(s) {
        assert_eq!(module_path::escape_version(&v).expect("decoded version must escape"), s);
    }

    // Version logic is total and consistent.
    if semver::is_valid(s) {
        let c = semver::canonical(s).expect("valid version has a canonical form");
        assert!(semver::is_valid(&c));
        assert_eq!(semver::compare(s, &c), std::cmp::Ordering::Equal);
    }
    let _ = semver::is_pseudo_version(s);
    let _ = semver::pseudo_version_time(s);
    let _ = module_path::check("example.com/m", s);

    // Patterns: split the input into a pattern and a name.
    if let Some((glob, name)) = s.split_once('\n') {
        let _ = pattern::path_match_checked(glob, name);
        let _ = pattern::match_prefix_patterns(glob, name);
    }
});
