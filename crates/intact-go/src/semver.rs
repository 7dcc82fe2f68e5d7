//! Semantic versions the Go way (`golang.org/x/mod/semver`), with pseudo-version rules.
//!
//! Go requires the leading `v` and accepts the shorthands `vMAJOR` and `vMAJOR.MINOR` (no
//! prerelease or build) for `vMAJOR.0.0` and `vMAJOR.MINOR.0`. Functions that extract a part
//! return `""` for "absent" exactly like Go does, so comparisons such as
//! `build(v) == "+incompatible"` read the same as in the go command.

use std::cmp::Ordering;

use crate::GoError;

/// The parts of a valid version, borrowed from the input.
#[derive(Debug, Clone, Copy)]
struct Parsed<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// What `canonical` appends for the shorthand forms (".0.0", ".0" or "").
    short: &'static str,
    /// Including the leading '-', or "".
    prerelease: &'a str,
    /// Including the leading '+', or "".
    build: &'a str,
}

fn parse(v: &str) -> Option<Parsed<'_>> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = parse_int(rest)?;
    if rest.is_empty() {
        return Some(Parsed {
            major,
            minor: "0",
            patch: "0",
            short: ".0.0",
            prerelease: "",
            build: "",
        });
    }
    let (minor, rest) = parse_int(rest.strip_prefix('.')?)?;
    if rest.is_empty() {
        return Some(Parsed {
            major,
            minor,
            patch: "0",
            short: ".0",
            prerelease: "",
            build: "",
        });
    }
    let (patch, mut rest) = parse_int(rest.strip_prefix('.')?)?;
    let mut prerelease = "";
    if rest.starts_with('-') {
        let end = rest.find('+').unwrap_or(rest.len());
        prerelease = &rest[..end];
        if !valid_idents(&prerelease[1..], true) {
            return None;
        }
        rest = &rest[end..];
    }
    let mut build = "";
    if rest.starts_with('+') {
        build = rest;
        if !valid_idents(&build[1..], false) {
            return None;
        }
        rest = "";
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Parsed {
        major,
        minor,
        patch,
        short: "",
        prerelease,
        build,
    })
}

/// A decimal number without extra leading zeros, and what follows it.
fn parse_int(s: &str) -> Option<(&str, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits > 1 && s.starts_with('0')) {
        return None;
    }
    Some(s.split_at(digits))
}

/// Dot-separated, non-empty identifiers of `[0-9A-Za-z-]`; in a prerelease, numeric
/// identifiers must not have leading zeros.
fn valid_idents(s: &str, prerelease: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') && !(prerelease && is_bad_num(id))
    })
}

fn is_bad_num(id: &str) -> bool {
    id.len() > 1 && id.starts_with('0') && id.bytes().all(|c| c.is_ascii_digit())
}

fn is_num(id: &str) -> bool {
    id.bytes().all(|c| c.is_ascii_digit())
}

/// Whether `v` is a valid semantic version (`semver.IsValid`).
pub fn is_valid(v: &str) -> bool {
    parse(v).is_some()
}

/// The canonical form of `v`: missing `.MINOR`/`.PATCH` filled in, build metadata dropped
/// (`semver.Canonical`); `None` if `v` is invalid.
pub fn canonical(v: &str) -> Option<String> {
    let p = parse(v)?;
    let without_build = &v[..v.len() - p.build.len()];
    Some(format!("{without_build}{}", p.short))
}

/// The major version prefix, e.g. `"v2"` for `"v2.1.0"` (`semver.Major`); `None` if invalid.
pub fn major(v: &str) -> Option<&str> {
    let p = parse(v)?;
    Some(&v[..1 + p.major.len()])
}

/// The `vMAJOR.MINOR` prefix (`semver.MajorMinor`); `None` if invalid.
pub fn major_minor(v: &str) -> Option<String> {
    let p = parse(v)?;
    Some(format!("v{}.{}", p.major, p.minor))
}

/// The prerelease suffix including its `-`, e.g. `"-pre"`; `""` if there is none or `v` is
/// invalid (`semver.Prerelease`).
pub fn prerelease(v: &str) -> &str {
    parse(v).map_or("", |p| p.prerelease)
}

/// The build suffix including its `+`, e.g. `"+incompatible"`; `""` if there is none or `v`
/// is invalid (`semver.Build`).
pub fn build(v: &str) -> &str {
    parse(v).map_or("", |p| p.build)
}

/// Semantic-version precedence (`semver.Compare`): build metadata is ignored, an invalid
/// version is less than every valid one, and all invalid versions are equal.
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_parsed(parse(a), parse(b))
}

fn compare_parsed(a: Option<Parsed<'_>>, b: Option<Parsed<'_>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(pa), Some(pb)) => compare_int(pa.major, pb.major)
            .then_with(|| compare_int(pa.minor, pb.minor))
            .then_with(|| compare_int(pa.patch, pb.patch))
            .then_with(|| compare_prerelease(pa.prerelease, pb.prerelease)),
    }
}

/// Numbers without leading zeros compare by length first, then digit by digit; no overflow.
fn compare_int(x: &str, y: &str) -> Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

fn compare_prerelease(x: &str, y: &str) -> Ordering {
    if x == y {
        return Ordering::Equal;
    }
    // A release sorts after all of its prereleases.
    if x.is_empty() {
        return Ordering::Greater;
    }
    if y.is_empty() {
        return Ordering::Less;
    }
    let mut xs = x[1..].split('.');
    let mut ys = y[1..].split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(dx), Some(dy)) if dx == dy => continue,
            (Some(dx), Some(dy)) => {
                return match (is_num(dx), is_num(dy)) {
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (true, true) => compare_int(dx, dy),
                    (false, false) => dx.cmp(dy),
                };
            }
        }
    }
}

/// Sorts versions by precedence, breaking ties by plain string order (`semver.Sort`), so the
/// result is deterministic even for equal-precedence spellings like `v1.0.0` and `v1.0.0+meta`.
pub fn sort_versions(versions: &mut [String]) {
    // A module's 100,000 versions take some 1.7 million comparisons to sort: each version is
    // parsed once into a small key compared by number, and only versions whose keys tie (a
    // prerelease of the same numbers, a shorthand, build metadata) or whose numbers do not
    // fit in a u64 are compared in full.
    let order: Vec<usize> = {
        let mut keys: Vec<SortKey> = versions.iter().enumerate().map(|(i, v)| SortKey::of(v, i)).collect();
        keys.sort_unstable_by(|a, b| {
            if let (Some(x), Some(y)) = (a.numbers, b.numbers) {
                let by_number = x.cmp(&y).then(a.release.cmp(&b.release));
                if by_number.is_ne() {
                    return by_number;
                }
            }
            let (x, y) = (&versions[a.index], &versions[b.index]);
            // A total order, so the unstable sort gives the one result `semver.Sort` does.
            compare(x, y).then_with(|| x.cmp(y))
        });
        keys.into_iter().map(|k| k.index).collect()
    };
    let mut taken: Vec<String> = versions.iter_mut().map(std::mem::take).collect();
    for (slot, i) in versions.iter_mut().zip(order) {
        *slot = std::mem::take(&mut taken[i]);
    }
}

/// What `sort_versions` compares first.
struct SortKey {
    /// major, minor, patch: `None` for an invalid version or a number past u64 (valid
    /// versions have no leading zeros, so numeric order is `compare_int`'s order).
    numbers: Option<[u64; 3]>,
    /// No prerelease: a release sorts after its prereleases.
    release: bool,
    index: usize,
}

impl SortKey {
    fn of(v: &str, index: usize) -> Self {
        let parsed = parse(v);
        Self {
            numbers: parsed.and_then(|p| Some([p.major.parse().ok()?, p.minor.parse().ok()?, p.patch.parse().ok()?])),
            release: parsed.is_some_and(|p| p.prerelease.is_empty()),
            index,
        }
    }
}

/// Whether `v` is `+incompatible`: a v2+ version of a module path without a `/vN` suffix.
pub fn is_incompatible(v: &str) -> bool {
    build(v) == "+incompatible"
}

/// Whether `v` has the form of a pseudo-version (`module.IsPseudoVersion`), e.g.
/// `v0.0.0-20191109021931-daa7c04131f5` or `v1.2.4-0.20191109021931-daa7c04131f5`.
pub fn is_pseudo_version(v: &str) -> bool {
    pseudo_parts(v).is_some()
}

/// The 14-digit timestamp of a pseudo-version, checked only for shape.
///
/// Hand-written form of x/mod's
/// `^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+build)?$`.
fn pseudo_parts(v: &str) -> Option<&str> {
    if v.matches('-').count() < 2 {
        return None;
    }
    let p = parse(v)?;
    // The shorthands have no prerelease, so a pseudo-version is always in full form.
    let body = p.prerelease.strip_prefix('-')?;
    let (stamped, rev) = body.rsplit_once('-')?;
    if rev.is_empty() || !rev.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let is_stamp = |s: &str| s.len() == 14 && s.bytes().all(|c| c.is_ascii_digit());
    // Form vX.0.0-yyyymmddhhmmss-rev.
    if p.minor == "0" && p.patch == "0" && is_stamp(stamped) {
        return Some(stamped);
    }
    // Forms vX.Y.Z-[pre.]0.yyyymmddhhmmss-rev.
    let (before, stamp) = stamped.split_at_checked(stamped.len().checked_sub(14)?)?;
    let lead = before.strip_suffix("0.")?;
    if is_stamp(stamp) && (lead.is_empty() || lead.ends_with('.')) {
        return Some(stamp);
    }
    None
}

/// The commit time recorded in a pseudo-version, as an RFC 3339 UTC timestamp
/// (`module.PseudoVersionTime`), e.g. `"2019-11-09T02:19:31Z"`.
pub fn pseudo_version_time(v: &str) -> Result<String, GoError> {
    let stamp = pseudo_parts(v).ok_or_else(|| GoError::version(v, "not a pseudo-version"))?;
    let num = |range: std::ops::Range<usize>| -> u32 {
        // Fourteen ASCII digits were checked above, so every slice parses.
        stamp[range].parse().unwrap_or(u32::MAX)
    };
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return Err(GoError::version(v, format!("malformed pseudo-version time {stamp:?}")));
    }
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"
    ))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The version `go get m@latest` settles on from a version list: the highest release;
/// failing that the highest prerelease; failing that the highest pseudo-version. Invalid
/// strings are ignored.
///
/// `+incompatible` versions count as releases here. The go command also drops them when
/// the latest compatible release has a go.mod file; a caller that knows that can filter
/// the list before calling.
pub fn latest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Ranks: 2 release, 1 prerelease, 0 pseudo-version.
    let rank = |v: &str| -> u8 {
        if is_pseudo_version(v) {
            0
        } else if prerelease(v).is_empty() {
            2
        } else {
            1
        }
    };
    versions
        .into_iter()
        .filter(|v| is_valid(v))
        .max_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| compare(a, b)).then_with(|| a.cmp(b)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    // From golang.org/x/mod/semver/semver_test.go: each entry is in increasing order, and
    // entries that share an `out` are equal.
    const TESTS: &[(&str, &str)] = &[
        ("bad", ""),
        ("v1-alpha.beta.gamma", ""),
        ("v1-pre", ""),
        ("v1+meta", ""),
        ("v1-pre+meta", ""),
        ("v1.2-pre", ""),
        ("v1.2+meta", ""),
        ("v1.2-pre+meta", ""),
        ("v1.0.0-alpha", "v1.0.0-alpha"),
        ("v1.0.0-alpha.1", "v1.0.0-alpha.1"),
        ("v1.0.0-alpha.beta", "v1.0.0-alpha.beta"),
        ("v1.0.0-beta", "v1.0.0-beta"),
        ("v1.0.0-beta.2", "v1.0.0-beta.2"),
        ("v1.0.0-beta.11", "v1.0.0-beta.11"),
        ("v1.0.0-rc.1", "v1.0.0-rc.1"),
        ("v1", "v1.0.0"),
        ("v1.0", "v1.0.0"),
        ("v1.0.0", "v1.0.0"),
        ("v1.2", "v1.2.0"),
        ("v1.2.0", "v1.2.0"),
        ("v1.2.3-456", "v1.2.3-456"),
        ("v1.2.3-456.789", "v1.2.3-456.789"),
        ("v1.2.3-456-789", "v1.2.3-456-789"),
        ("v1.2.3-456a", "v1.2.3-456a"),
        ("v1.2.3-pre", "v1.2.3-pre"),
        ("v1.2.3-pre+meta", "v1.2.3-pre"),
        ("v1.2.3-pre.1", "v1.2.3-pre.1"),
        ("v1.2.3-zzz", "v1.2.3-zzz"),
        ("v1.2.3", "v1.2.3"),
        ("v1.2.3+meta", "v1.2.3"),
        ("v1.2.3+meta-pre", "v1.2.3"),
        ("v1.2.3+meta-pre.sha.256a", "v1.2.3"),
    ];

    #[test]
    fn canonical_and_validity_follow_x_mod() {
        for &(input, out) in TESTS {
            assert_eq!(is_valid(input), !out.is_empty(), "is_valid({input})");
            assert_eq!(canonical(input).unwrap_or_default(), out, "canonical({input})");
        }
        for bad in [
            "",
            "v",
            "1.2.3",
            "v01.2.3",
            "v1.02.3",
            "v1.2.03",
            "v1.2.3-01",
            "v1.2.3-",
            "v1.2.3+",
            "v1.2.3-a..b",
            "v1.2.3+a..b",
            "v1.2.3-a_b",
            "v1.2.3.4",
            "v1.2.3 ",
            "V1.2.3",
        ] {
            assert!(!is_valid(bad), "{bad:?} should be invalid");
        }
        // Leading zeros are fine in build metadata, not in prerelease numbers.
        assert!(is_valid("v1.2.3+0123"));
        assert!(is_valid("v1.2.3-0a"));
    }

    #[test]
    fn compare_table_is_ordered() {
        for (i, &(vi, outi)) in TESTS.iter().enumerate() {
            for (j, &(vj, outj)) in TESTS.iter().enumerate() {
                let want = if outi == outj { Ordering::Equal } else { i.cmp(&j) };
                assert_eq!(compare(vi, vj), want, "compare({vi}, {vj})");
            }
        }
        // Numbers compare numerically, not as strings.
        assert_eq!(compare("v1.10.0", "v1.9.0"), Ordering::Greater);
        assert_eq!(compare("v10.0.0", "v9.0.0"), Ordering::Greater);
        assert_eq!(compare("v99999999999999999999999.0.0", "v1.0.0"), Ordering::Greater);
    }

    #[test]
    fn parts() {
        assert_eq!(major("v2.1.0"), Some("v2"));
        assert_eq!(major("v2"), Some("v2"));
        assert_eq!(major("bad"), None);
        assert_eq!(major_minor("v2.1.0").as_deref(), Some("v2.1"));
        assert_eq!(major_minor("v2").as_deref(), Some("v2.0"));
        assert_eq!(prerelease("v2.1.0-pre+meta"), "-pre");
        assert_eq!(prerelease("v2.1.0"), "");
        assert_eq!(prerelease("bad-pre"), "");
        assert_eq!(build("v2.1.0+meta"), "+meta");
        assert_eq!(build("v2.1.0-pre+meta"), "+meta");
        assert!(is_incompatible("v2.0.0+incompatible"));
        assert!(!is_incompatible("v2.0.0"));
    }

    #[test]
    fn sort_breaks_ties_by_string() {
        let mut v: Vec<String> = ["v1.0.0+b", "bad", "v1.10.0", "v1.0.0", "v1.0.0+a", "v1.2.0", "ugly"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort_versions(&mut v);
        assert_eq!(
            v,
            ["bad", "ugly", "v1.0.0", "v1.0.0+a", "v1.0.0+b", "v1.2.0", "v1.10.0"]
        );
    }

    #[test]
    fn the_keyed_sort_orders_as_comparing_in_full_does() {
        let mixed = [
            "v1.0.0",
            "v1.0.0-rc.1",
            "v1.0.0-rc.2",
            "v1.0.0-alpha",
            "v1.0.0+meta",
            "v1",
            "v1.0",
            "v1.0.0-rc.1+b",
            "v0.9.99",
            "v10.0.0",
            "v2.0.0+incompatible",
            "v2.0.0-pre",
            "v99999999999999999999.0.0",
            "v99999999999999999999.0.0-rc",
            "v18446744073709551615.0.0",
            "v18446744073709551616.1.0",
            "bad",
            "v1.0.01",
            "",
            "v1.2.3-0.20060102150405-hash",
            "v1.2.3",
            "v1.2.2",
            "v1.2.10",
            "v1.10.0",
            "v1.9.0",
        ];
        // Every rotation, so the sort meets the versions in many orders.
        for shift in 0..mixed.len() {
            let mut v: Vec<String> = mixed
                .iter()
                .cycle()
                .skip(shift)
                .take(mixed.len())
                .map(|s| s.to_string())
                .collect();
            let mut reference = v.clone();
            reference.sort_by(|a, b| compare(a, b).then_with(|| a.cmp(b)));
            sort_versions(&mut v);
            assert_eq!(v, reference, "rotation {shift}");
        }
    }

    #[test]
    fn pseudo_versions() {
        // From x/mod/module/pseudo_test.go and the forms documented in pseudo.go.
        for v in [
            "v0.0.0-20060102150405-hash",
            "v1.0.0-20060102150405-hash",
            "v2.0.0-20060102150405-hash",
            "v1.2.4-0.20060102150405-hash",
            "v1.2.4-0.20060102150405-hash+incompatible",
            "v1.2.3-pre.0.20060102150405-hash",
            "v1.2.3-pre.0.20060102150405-hash+incompatible",
            "v1.2.3-alpha.beta.0.20060102150405-abcdef123456",
            "v0.0.0-20191109021931-daa7c04131f5",
        ] {
            assert!(is_pseudo_version(v), "{v} should be a pseudo-version");
        }
        for v in [
            "v1.0.0",
            "v1.2.3-pre",
            "v0.0.0-2006010215040-hash",   // 13 digits
            "v0.0.0-200601021504050-hash", // 15 digits
            "v1.2.4-1.20060102150405-hash",
            "v1.2.4-pre0.20060102150405-hash",
            "v1.2.3-20060102150405-hash", // form 1 needs X.0.0
            "v0.0.0-20060102150405-",
            "v0.0.0-20060102150405-ha_sh",
            "v0.0.0-20060102150405",
            "bad-20060102150405-hash",
        ] {
            assert!(!is_pseudo_version(v), "{v} should not be a pseudo-version");
        }
    }

    #[test]
    fn pseudo_time() {
        assert_eq!(
            pseudo_version_time("v1.2.4-0.20191109021931-daa7c04131f5").unwrap(),
            "2019-11-09T02:19:31Z"
        );
        assert_eq!(
            pseudo_version_time("v0.0.0-20060102150405-hash+incompatible").unwrap(),
            "2006-01-02T15:04:05Z"
        );
        assert_eq!(
            pseudo_version_time("v0.0.0-20200229000000-hash").unwrap(),
            "2020-02-29T00:00:00Z"
        );
        for bad in [
            "v0.0.0-20190229000000-hash", // not a leap year
            "v0.0.0-20191301000000-hash",
            "v0.0.0-20191100000000-hash",
            "v0.0.0-20191109240000-hash",
            "v0.0.0-20191109006000-hash",
            "v1.0.0",
        ] {
            assert!(
                matches!(pseudo_version_time(bad), Err(GoError::InvalidVersion { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn latest_prefers_release_then_prerelease_then_pseudo() {
        assert_eq!(
            latest([
                "v1.9.0",
                "v1.10.0",
                "v1.11.0-rc.1",
                "v0.0.0-20300101000000-abcdef123456",
                "junk"
            ]),
            Some("v1.10.0")
        );
        assert_eq!(
            latest(["v1.0.0-alpha", "v1.0.0-beta", "v1.1.0-0.20300101000000-abcdef123456"]),
            Some("v1.0.0-beta")
        );
        assert_eq!(
            latest([
                "v0.0.0-20190101000000-abcdef123456",
                "v0.0.0-20200101000000-abcdef123456"
            ]),
            Some("v0.0.0-20200101000000-abcdef123456")
        );
        assert_eq!(latest(["v2.0.0+incompatible", "v1.5.0"]), Some("v2.0.0+incompatible"));
        assert_eq!(latest(["junk"]), None);
        assert_eq!(latest(Vec::<&str>::new()), None);
    }
}
