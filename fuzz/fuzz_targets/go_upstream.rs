//! A Go proxy repo's upstream list (`https://a,file:///m|off`, GOPROXY syntax) and upstream
//! `list` bodies. Every accepted HTTP entry is a URL with no query, fragment or trailing `/`
//! naming the host the operator wrote, every file entry an absolute directory, and writing
//! the entries back out parses to the same list. A `list` body yields tagged versions only,
//! and merging and rendering lists is sorted, duplicate-free and reads back unchanged.
#![no_main]

use intact_server::go::upstream::{Source, parse_list};
use intact_server::go::versions;
use libfuzzer_sys::fuzz_target;
use reqwest::Url;

fuzz_target!(|data: &[u8]| {
    let listed = versions::parse_list(data);
    assert!(listed.iter().all(|v| versions::is_listed(v)), "{listed:?}");
    let merged = versions::merge([listed.clone()]);
    // Go's order: precedence, then plain string order for equal precedence (`v1.0.0` and
    // `v1.0.0+meta` are different spellings of one precedence and both stay listed).
    for w in merged.windows(2) {
        assert_eq!(
            intact_go::semver::compare(&w[0], &w[1]).then_with(|| w[0].cmp(&w[1])),
            std::cmp::Ordering::Less,
            "{merged:?} not sorted and unique"
        );
    }
    let body = versions::render(&merged);
    assert_eq!(versions::parse_list(body.as_bytes()), merged);

    let text = String::from_utf8_lossy(data);
    if let Ok(entries) = parse_list(&text) {
        assert!(!entries.is_empty());
        let mut written = String::new();
        for (i, e) in entries.iter().enumerate() {
            match &e.source {
                Source::Http(base) => {
                    let url = Url::parse(base).unwrap_or_else(|err| panic!("{base:?} stored but not a URL: {err}"));
                    assert!(matches!(url.scheme(), "http" | "https"), "{base:?}");
                    assert!(url.query().is_none() && url.fragment().is_none(), "{base:?}");
                    assert!(!base.ends_with('/'), "{base:?}");
                    assert!(url.host().is_some(), "{base:?} has no host");
                    // What the proxy requests: the base, a slash, an escaped module path.
                    let request = Url::parse(&format!("{base}/example.com/m/@v/list"))
                        .unwrap_or_else(|err| panic!("{base:?}: request URL does not parse: {err}"));
                    assert_eq!(
                        request.host(),
                        url.host(),
                        "{base:?}: requests would go to another host"
                    );
                    assert!(request.query().is_none() && request.fragment().is_none(), "{base:?}");
                    written.push_str(base);
                }
                Source::File(dir) => {
                    assert!(dir.is_absolute(), "{dir:?}");
                    let url = Url::from_file_path(dir).unwrap_or_else(|()| panic!("{dir:?} has no file URL"));
                    written.push_str(url.as_str());
                }
                Source::Direct => written.push_str("direct"),
                Source::Off => written.push_str("off"),
            }
            if i + 1 < entries.len() {
                written.push(if e.fallback_on_any_error { '|' } else { ',' });
            }
        }
        // A URL holding a separator (`%2C` decodes to `,` in a host, a file path keeps a
        // literal `,`) cannot be written in a GOPROXY list at all, by intact or by Go; every
        // other list must read back the same.
        let parts: Vec<&str> = written.split([',', '|']).collect();
        if parts.len() != entries.len() {
            return;
        }
        let again = parse_list(&written).unwrap_or_else(|err| panic!("{written:?} does not parse again: {err}"));
        // The last entry's separator is not written; it never matters (nothing follows it).
        let flags = |v: &[intact_server::go::upstream::Entry]| {
            v.iter()
                .take(v.len().saturating_sub(1))
                .map(|e| e.fallback_on_any_error)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            again.iter().map(|e| &e.source).collect::<Vec<_>>(),
            entries.iter().map(|e| &e.source).collect::<Vec<_>>(),
            "{text:?} written as {written:?}"
        );
        assert_eq!(flags(&again), flags(&entries));
    }
});
