//! Allow-list grammars for everything a client names: repositories, artifact names, versions
//! and file paths. Validation happens on the *decoded* string, so `%2e%2e` and friends arrive
//! here as `..` and are refused. Nothing validated here is ever joined onto a filesystem path:
//! storage paths come from digests only.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value from outside broke a rule. `field` names the input ("name", "version", "path"...),
/// `rule` says in plain words what was expected, so a 400 body can name both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {rule}")]
pub struct ValidationError {
    pub field: &'static str,
    pub value: String,
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: &'static str, value: &str, rule: impl Into<String>) -> Self {
        // Echo at most a bounded prefix: the value may be hostile and huge.
        let value: String = value.chars().take(200).collect();
        Self {
            field,
            value,
            rule: rule.into(),
        }
    }
}

const MAX_NAME_LEN: usize = 1024;
const MAX_SEGMENT_LEN: usize = 255;
const MAX_REPO_LEN: usize = 64;
const MAX_VERSION_LEN: usize = 128;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Which extra characters a segmented value may use beyond `[A-Za-z0-9._-]`.
#[derive(Clone, Copy)]
struct SegmentRules {
    field: &'static str,
    /// Go module paths may contain `~`; user-facing names may not.
    allow_tilde: bool,
    /// Internal names may start with an `@` segment (reserved namespace users cannot create).
    allow_at_first_segment: bool,
}

fn check_segmented(s: &str, rules: SegmentRules) -> Result<(), ValidationError> {
    let field = rules.field;
    let grammar = if rules.allow_tilde {
        "one or more '/'-separated segments of [A-Za-z0-9._~-], no segment '.' or '..', none starting with '@'"
    } else {
        "one or more '/'-separated segments of [A-Za-z0-9._-], no segment '.' or '..', none starting with '@'"
    };
    if s.is_empty() {
        return Err(ValidationError::new(field, s, format!("must not be empty; {grammar}")));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(ValidationError::new(
            field,
            s,
            format!("must be at most {MAX_NAME_LEN} bytes"),
        ));
    }
    for (i, seg) in s.split('/').enumerate() {
        if seg.is_empty() {
            return Err(ValidationError::new(
                field,
                s,
                format!("empty segment (leading, trailing or doubled '/'); {grammar}"),
            ));
        }
        if seg == "." || seg == ".." {
            return Err(ValidationError::new(
                field,
                s,
                format!("segment {seg:?} is not allowed; {grammar}"),
            ));
        }
        if seg.len() > MAX_SEGMENT_LEN {
            return Err(ValidationError::new(
                field,
                s,
                format!("segment longer than {MAX_SEGMENT_LEN} bytes"),
            ));
        }
        let body = if let Some(rest) = seg.strip_prefix('@') {
            if i == 0 && rules.allow_at_first_segment {
                rest
            } else {
                return Err(ValidationError::new(
                    field,
                    s,
                    format!("segment {seg:?} starts with '@'; {grammar}"),
                ));
            }
        } else {
            seg
        };
        if let Some(bad) = body
            .chars()
            .find(|&c| !(is_name_char(c) || (rules.allow_tilde && c == '~')))
        {
            return Err(ValidationError::new(
                field,
                s,
                format!("character {bad:?} is not allowed; {grammar}"),
            ));
        }
    }
    Ok(())
}

macro_rules! string_newtype {
    ($ty:ident) => {
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::parse(&s).map_err(serde::de::Error::custom)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::parse(s)
            }
        }
    };
}

/// A repository name: one segment of `[A-Za-z0-9._-]`, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);
string_newtype!(RepoName);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        const RULE: &str = "one segment of [A-Za-z0-9._-], 1-64 characters, not '.' or '..'";
        if s.is_empty() || s.len() > MAX_REPO_LEN || s == "." || s == ".." || !s.chars().all(is_name_char) {
            return Err(ValidationError::new("repo", s, RULE));
        }
        Ok(Self(s.to_owned()))
    }
}

/// An artifact name: `/`-separated segments of `[A-Za-z0-9._-]`, no `.`/`..` segment, no
/// segment starting with `@` (that prefix is reserved for intact's own namespaces).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);
string_newtype!(Name);

impl Name {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        check_segmented(
            s,
            SegmentRules {
                field: "name",
                allow_tilde: false,
                allow_at_first_segment: false,
            },
        )?;
        Ok(Self(s.to_owned()))
    }

    /// Names that front-ends build themselves (Go module paths, which may hold `~`; internal
    /// namespaces under a leading `@segment`). Never call this with a raw client string that
    /// the front-end has not validated by its own grammar first.
    pub fn parse_internal(s: &str) -> Result<Self, ValidationError> {
        check_segmented(
            s,
            SegmentRules {
                field: "name",
                allow_tilde: true,
                allow_at_first_segment: true,
            },
        )?;
        Ok(Self(s.to_owned()))
    }

    /// Whether this name lives in an internal `@...` namespace (hidden from browsing).
    pub fn is_internal(&self) -> bool {
        self.0.starts_with('@')
    }
}

/// A version: 1-128 characters of `[A-Za-z0-9._+-]`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(String);
string_newtype!(Version);

impl Version {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        const RULE: &str = "1-128 characters of [A-Za-z0-9._+-], not '.' or '..'";
        if s.is_empty()
            || s.len() > MAX_VERSION_LEN
            || s == "."
            || s == ".."
            || !s.chars().all(|c| is_name_char(c) || c == '+')
        {
            return Err(ValidationError::new("version", s, RULE));
        }
        Ok(Self(s.to_owned()))
    }

    /// The integer value of a version allocated by `"version": "auto"` (`1`, `2`, ...):
    /// a plain decimal without leading zeros that fits in an i64.
    pub fn as_auto_number(&self) -> Option<i64> {
        let s = self.0.as_str();
        if s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }

    pub fn from_number(n: i64) -> Self {
        Self(n.to_string())
    }
}

/// A tag: a movable pointer from a name to one of its versions (`hero`, `approved`,
/// `latest`). 1-128 characters of `[A-Za-z0-9._-]`, not `.` or `..`; the version grammar
/// without `+`, so a tag never reads like a version with build metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);
string_newtype!(Tag);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        const RULE: &str = "1-128 characters of [A-Za-z0-9._-], not '.' or '..'";
        if s.is_empty() || s.len() > MAX_VERSION_LEN || s == "." || s == ".." || !s.chars().all(is_name_char) {
            return Err(ValidationError::new("tag", s, RULE));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A file path inside a version: same grammar as names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(String);
string_newtype!(FilePath);

impl FilePath {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        check_segmented(
            s,
            SegmentRules {
                field: "path",
                allow_tilde: false,
                allow_at_first_segment: false,
            },
        )?;
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_grammar() {
        for ok in [
            "a",
            "renders/shot_010/comp",
            "x86-alex-release/R19-2003.0.0",
            "a.b_c-d",
            "...x",
        ] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_refuse_escapes_and_oddities() {
        for bad in [
            "",
            "/",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "a/./b",
            "@v",
            "a/@v",
            "a\\b",
            "a b",
            "a%2e",
            "a\0b",
            "é",
            "a/..",
            "../etc/passwd",
            "a~b",
        ] {
            let err = Name::parse(bad).expect_err(bad);
            assert_eq!(err.field, "name");
        }
    }

    #[test]
    fn internal_names_allow_tilde_and_leading_at() {
        assert!(Name::parse_internal("@go/example.com/a~b").is_ok());
        assert!(Name::parse_internal("a/@go").is_err());
        assert!(Name::parse_internal("a/..").is_err());
    }

    #[test]
    fn versions() {
        for ok in [
            "1",
            "v1.2.3",
            "v2.0.0+incompatible",
            "v0.0.0-20191109021931-daa7c04131f5",
            "R19-2003.0.0",
        ] {
            assert!(Version::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", ".", "..", "a/b", "a b", "v1@2", long.as_str()] {
            assert_eq!(Version::parse(bad).expect_err(bad).field, "version");
        }
        assert!(Version::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn auto_numbers() {
        assert_eq!(Version::parse("12").ok().and_then(|v| v.as_auto_number()), Some(12));
        assert_eq!(Version::parse("012").ok().and_then(|v| v.as_auto_number()), None);
        assert_eq!(Version::parse("v1").ok().and_then(|v| v.as_auto_number()), None);
        assert_eq!(
            Version::parse("99999999999999999999")
                .ok()
                .and_then(|v| v.as_auto_number()),
            None
        );
    }

    #[test]
    fn repos() {
        assert!(RepoName::parse("go-private").is_ok());
        for bad in ["", "a/b", "..", "@x", &"r".repeat(65)] {
            assert_eq!(RepoName::parse(bad).expect_err(bad).field, "repo");
        }
    }

    #[test]
    fn paths_match_names() {
        assert!(FilePath::parse("dir/file.bin").is_ok());
        assert_eq!(FilePath::parse("../x").expect_err("..").field, "path");
    }

    #[test]
    fn tags() {
        for ok in ["hero", "latest", "v1.2_rc-3", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "v1+build", "@x", "sp ace", &"t".repeat(129)] {
            assert_eq!(Tag::parse(bad).expect_err(bad).field, "tag");
        }
    }
}
