//! The properties the fuzz targets in `fuzz/` assert, run on stable over seeded
//! pseudo-random inputs so CI checks them on every run (the fuzzers go much deeper).

use std::cmp::Ordering;
use std::io::Cursor;

use intact_go::{dirhash, gomod, info, module_path, pattern, semver, zip};

use crate::support::zip_of;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Strings built from the pieces that matter to path and version rules.
fn random_string(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "z",
        "A",
        "Z",
        "0",
        "9",
        ".",
        "/",
        "!",
        "~",
        "-",
        "_",
        "+",
        "v",
        "v2",
        "/v2",
        ".v1",
        "gopkg.in/",
        "example.com",
        "x.y",
        "com1",
        "aux",
        "vendor",
        "..",
        "//",
        " ",
        ":",
        "\\",
        "*",
        "?",
        "[",
        "]",
        "^",
        "@",
        "\u{e9}",
        "\u{301}",
        "\u{212a}",
        "20060102150405",
        "-0.",
        "+incompatible",
        "\n",
    ];
    let n = rng.below(8);
    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

#[test]
fn escaping_round_trips() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..50_000 {
        let s = random_string(&mut rng);
        if module_path::check_path(&s).is_ok() {
            let escaped = module_path::escape_path(&s).unwrap();
            assert!(!escaped.bytes().any(|c| c.is_ascii_uppercase()), "{s:?}");
            assert_eq!(module_path::unescape_path(&escaped).unwrap(), s);
            assert!(module_path::check_import_path(&s).is_ok(), "{s:?}");
        } else {
            assert!(module_path::escape_path(&s).is_err(), "{s:?}");
        }
        if let Ok(path) = module_path::unescape_path(&s) {
            assert_eq!(module_path::escape_path(&path).unwrap(), s);
        }
        if module_path::check_import_path(&s).is_ok() {
            assert!(module_path::check_file_path(&s).is_ok(), "{s:?}");
        }
        if let Ok(escaped) = module_path::escape_version(&s) {
            assert_eq!(module_path::unescape_version(&escaped).unwrap(), s);
        }
        if let Ok(v) = module_path::unescape_version(&s) {
            assert_eq!(module_path::escape_version(&v).unwrap(), s);
        }
        if semver::is_valid(&s) {
            let c = semver::canonical(&s).unwrap();
            assert_eq!(semver::compare(&s, &c), Ordering::Equal, "{s:?}");
        }
        let _ = semver::pseudo_version_time(&s);
        let _ = pattern::path_match_checked(&s, "example.com/x");
        let _ = pattern::match_prefix_patterns(&s, "example.com/x/y");
        let _ = gomod::parse_module_path(s.as_bytes());
        let _ = info::parse_info(s.as_bytes());
    }
}

#[test]
fn compare_is_a_total_order() {
    let mut rng = Rng(42);
    let versions: Vec<String> = (0..300)
        .map(|_| {
            let mut v = format!("v{}.{}.{}", rng.below(3), rng.below(3), rng.below(3));
            if rng.below(2) == 0 {
                v += ["-pre", "-0.20060102150405-abc", "-rc.1", "-1", "-alpha.beta"][rng.below(5)];
            }
            if rng.below(4) == 0 {
                v += "+meta";
            }
            if rng.below(10) == 0 {
                v = random_string(&mut rng);
            }
            v
        })
        .collect();
    for a in &versions {
        for b in &versions {
            assert_eq!(semver::compare(a, b), semver::compare(b, a).reverse(), "{a} {b}");
        }
    }
    let mut sorted = versions.clone();
    semver::sort_versions(&mut sorted);
    for w in sorted.windows(2) {
        assert_ne!(semver::compare(&w[0], &w[1]), Ordering::Greater, "{w:?}");
    }
}

#[test]
fn mangled_zips_never_panic_and_checked_ones_hash() {
    let good = zip_of(&[
        ("example.com/m@v1.0.0/", b""),
        ("example.com/m@v1.0.0/go.mod", b"module example.com/m\n"),
        ("example.com/m@v1.0.0/a/b.go", b"package a\n\nfunc B() {}\n"),
        ("example.com/m@v1.0.0/LICENSE", &[b'x'; 300]),
    ]);
    assert!(zip::check_zip(Cursor::new(&good), "example.com/m", "v1.0.0").is_ok());
    let mut rng = Rng(7);
    for _ in 0..3_000 {
        let mut z = good.clone();
        for _ in 0..=rng.below(4) {
            let i = rng.below(z.len());
            z[i] = rng.next() as u8;
        }
        if rng.below(8) == 0 {
            z.truncate(rng.below(z.len()));
        }
        let checked = zip::check_zip(Cursor::new(&z), "example.com/m", "v1.0.0");
        let hashed = dirhash::hash_zip(Cursor::new(&z));
        if checked.is_ok() {
            assert!(hashed.is_ok(), "checked but not hashable: {hashed:?}");
        }
    }
}
