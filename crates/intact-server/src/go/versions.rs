//! Version lists: reading an upstream's `list`, merging it with what is stored, and
//! rendering the answer. Pure functions, so the rules are tested without a server.
//!
//! A `list` holds tagged versions only: like the go command (and proxy.golang.org), intact
//! leaves pseudo-versions out; they stay reachable by exact version and through `@latest`.

use intact_go::semver;

/// The versions in an upstream `list` body, read as the go command reads it: the first field
/// of each line, if it is a valid semantic version and not a pseudo-version.
pub fn parse_list(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|v| is_listed(v))
        .map(str::to_owned)
        .collect()
}

/// Whether `v` belongs in a `list` answer.
pub fn is_listed(v: &str) -> bool {
    semver::is_valid(v) && !semver::is_pseudo_version(v)
}

/// The union of several lists, tagged versions only, each once, in Go's semver order.
pub fn merge(lists: impl IntoIterator<Item = Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = lists.into_iter().flatten().filter(|v| is_listed(v)).collect();
    semver::sort_versions(&mut all);
    all.dedup();
    all
}

/// The `list` response body: one version per line.
pub fn render(list: &[String]) -> String {
    let mut out = String::with_capacity(list.iter().map(|v| v.len() + 1).sum());
    for v in list {
        out.push_str(v);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn upstream_lists_are_read_like_go_does() {
        let body = b"v1.0.0\nv1.1.0 2019-01-01T00:00:00Z\n\n  \nnot-a-version\nv0.0.0-20240102030405-abcdefabcdef\nv2.0.0+incompatible\r\n";
        assert_eq!(parse_list(body), s(&["v1.0.0", "v1.1.0", "v2.0.0+incompatible"]));
        assert!(parse_list(b"").is_empty());
    }

    #[test]
    fn merging_sorts_by_semver_and_drops_duplicates_and_pseudo_versions() {
        let upstream = s(&["v1.10.0", "v1.2.0", "v1.9.0"]);
        let stored = s(&[
            "v1.2.0",
            "v1.11.0-rc.1",
            "v0.0.0-20240102030405-abcdefabcdef",
            "v1.10.0",
        ]);
        let hosted = s(&["v2.0.0+incompatible", "v1.0.0"]);
        assert_eq!(
            merge([upstream, stored, hosted]),
            s(&[
                "v1.0.0",
                "v1.2.0",
                "v1.9.0",
                "v1.10.0",
                "v1.11.0-rc.1",
                "v2.0.0+incompatible"
            ])
        );
        assert!(merge(Vec::<Vec<String>>::new()).is_empty());
    }

    #[test]
    fn rendering() {
        assert_eq!(render(&s(&["v1.0.0", "v1.1.0"])), "v1.0.0\nv1.1.0\n");
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn thousands_of_versions_merge_in_order() {
        let many: Vec<String> = (0..2500).rev().map(|i| format!("v1.{}.{}", i / 100, i % 100)).collect();
        let merged = merge([many.clone(), many]);
        assert_eq!(merged.len(), 2500);
        assert_eq!(merged.first().map(String::as_str), Some("v1.0.0"));
        assert_eq!(merged.last().map(String::as_str), Some("v1.24.99"));
        assert_eq!(semver::latest(merged.iter().map(String::as_str)), Some("v1.24.99"));
    }
}
