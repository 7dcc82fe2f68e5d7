//! Small Go documents from upstream proxies and uploads: `.info` JSON, go.mod files (the
//! `module` and `go` directives), `list` bodies. Parsing never panics; an `.info` that parses
//! is valid and survives being served and read back; a module path read from a go.mod reads
//! back the same from a go.mod that quotes it; a `go` directive agrees with the version check
//! built on it.
#![no_main]

use intact_go::{dirhash, gomod, info, semver};
use libfuzzer_sys::fuzz_target;

/// `s` as a Go interpreted string literal using only the escapes go.mod parsing reads.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(i) = info::parse_info(data) {
        assert!(semver::is_valid(&i.version), "{i:?}");
        let served = i.to_json();
        assert_eq!(
            info::parse_info(&served).ok(),
            Some(i),
            "{}",
            String::from_utf8_lossy(&served)
        );
    }

    match gomod::parse_module_path(data) {
        Ok(Some(path)) => {
            assert_eq!(gomod::module_path(data).as_deref(), Some(path.as_str()));
            let again = format!("module {}\n", quote(&path));
            assert_eq!(
                gomod::parse_module_path(again.as_bytes()).ok().flatten().as_deref(),
                Some(path.as_str()),
                "{again:?}"
            );
        }
        Ok(None) => assert_eq!(gomod::module_path(data), None),
        Err(_) => assert_eq!(gomod::module_path(data), None),
    }
    if let Some(v) = gomod::go_directive(data) {
        let mut parts = v.split('.');
        let major = parts.next().and_then(|m| m.parse::<u64>().ok());
        let minor = parts.next().and_then(|m| {
            let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        });
        // Numbers too large for u64 cannot be compared; anything else must agree.
        if let (Some(major), Some(minor)) = (major, minor) {
            assert!(gomod::go_version_at_least(data, major, minor), "go {v}");
            if minor < u64::MAX {
                assert!(!gomod::go_version_at_least(data, major, minor + 1), "go {v}");
            }
        }
    }
    let h1 = dirhash::hash_go_mod(data);
    assert!(h1.starts_with("h1:"), "{h1}");
});
