//! Staging's reading of an upstream's autoindex page and its file globs. Every name taken
//! from a page is one plain file name (no `/`, `\`, NUL or control character, never `.` or
//! `..`), and a link to any such name, percent-encoded as a server would write it, reads back
//! as exactly that name. Globs agree with a straightforward reference matcher; a pattern that
//! passes the start-up check is a valid relative path with globs only in its last segment.
#![no_main]

use intact_core::FilePath;
use intact_server::staging::listing::{check_pattern, glob_match, parse_index, percent_decode, percent_encode};
use libfuzzer_sys::fuzz_target;

/// `*` = any run of characters, `?` = one character, by dynamic programming.
fn reference_glob(pattern: &[char], name: &[char]) -> bool {
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        if p == '*' {
            let mut any = false;
            for i in 0..=name.len() {
                any |= row[i];
                next[i] = any;
            }
        } else {
            for i in 0..name.len() {
                next[i + 1] = row[i] && (p == '?' || p == name[i]);
            }
        }
        row = next;
    }
    row[name.len()]
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let names = parse_index(&html);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {names:?}");
    for name in &names {
        assert!(plain_name(name), "{name:?} is not a plain file name");
        if let Ok(p) = FilePath::parse(name) {
            assert!(!p.as_str().contains('/'));
        }
        let page = format!("<a href=\"{}\">link</a>", percent_encode(name));
        assert_eq!(
            parse_index(&page),
            std::slice::from_ref(name),
            "link to {name:?} does not read back"
        );
    }

    // Strict percent-decoding: every '%' starts a two-hex-digit escape, and what decodes
    // encodes back to something that decodes the same.
    if let Some(decoded) = percent_decode(&html) {
        let bytes = html.as_bytes();
        for (i, _) in html.match_indices('%') {
            assert!(
                bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                "{html:?} decoded although escape at {i} is malformed"
            );
        }
        assert_eq!(
            percent_decode(&percent_encode(&decoded)).as_deref(),
            Some(decoded.as_str())
        );
    }

    let (pattern, name) = html.split_once('\n').unwrap_or((&html, ""));
    if pattern.len() <= 256 && name.len() <= 256 {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        assert_eq!(
            glob_match(pattern, name),
            reference_glob(&p, &n),
            "glob {pattern:?} on {name:?}"
        );
    } else {
        let _ = glob_match(pattern, name);
    }
    if check_pattern(pattern).is_ok() {
        let (dir, last) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        assert!(!dir.contains(['*', '?']) && !last.is_empty(), "{pattern:?}");
        assert!(
            FilePath::parse(&pattern.replace(['*', '?'], "x")).is_ok(),
            "{pattern:?}"
        );
    }
});
