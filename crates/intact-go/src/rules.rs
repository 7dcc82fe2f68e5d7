//! Allow and deny rules of a proxy repo: which modules, and which of their versions, it serves.
//!
//! A rule is `GLOB` or `GLOB@CONSTRAINT`:
//!
//! * `GLOB` is one GOPRIVATE-style pattern (Go's `path.Match` against the module path's leading
//!   elements, so `github.com/acme` covers every module below it, `*.corp.example.com` every
//!   module on those hosts);
//! * `CONSTRAINT` is one or more comparisons separated by `,`, all of which must hold:
//!   `<V`, `<=V`, `>V`, `>=V`, `=V` or a bare `V` (the same as `=V`), each `V` a semantic
//!   version with its leading `v` (`github.com/pkg/errors@<v0.9.0`,
//!   `example.com/m@>=v1.2.0,<v1.3.0`). Versions compare by semantic-version precedence:
//!   build metadata (`+incompatible`) is ignored and a prerelease sorts before its release,
//!   so `<v0.9.0` covers `v0.9.0-rc.1`.
//!
//! A module version is denied when a deny rule matches it, or when allow rules exist and none
//! matches it (allow rules are alternatives: one match is enough). A rule without a constraint
//! matches every version of the modules its glob covers, so it decides the whole module (its
//! `list` and `@latest` too); a constrained rule decides versions only, of every module its
//! glob covers (submodules below it included, each with its own versions).

use crate::{pattern, semver};

/// One comparison of a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
}

impl Op {
    fn holds(self, version: &str, bound: &str) -> bool {
        let order = semver::compare(version, bound);
        match self {
            Op::Less => order.is_lt(),
            Op::LessOrEqual => order.is_le(),
            Op::Greater => order.is_gt(),
            Op::GreaterOrEqual => order.is_ge(),
            Op::Equal => order.is_eq(),
        }
    }
}

/// One allow or deny rule, as written and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    text: String,
    glob: String,
    /// Every comparison must hold; empty = every version.
    constraint: Vec<(Op, String)>,
}

impl Rule {
    /// Parses `GLOB[@CONSTRAINT]`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (glob, constraint) = match text.split_once('@') {
            Some((glob, constraint)) => (glob, Some(constraint)),
            None => (text, None),
        };
        let glob = glob.trim();
        if glob.is_empty() {
            return Err(format!("{text:?}: the module glob before '@' is empty"));
        }
        if glob.contains(',') {
            return Err(format!(
                "{text:?}: one module glob per rule (list several as separate strings)"
            ));
        }
        if glob.chars().any(char::is_whitespace) {
            return Err(format!("{text:?}: a module glob has no spaces"));
        }
        if pattern::path_match_checked(glob, glob).is_none() {
            return Err(format!(
                "{text:?}: {glob:?} is not a valid glob (Go's path.Match syntax)"
            ));
        }
        // Spellings that would silently match nothing: an empty path element, Go's package
        // pattern `...` (a glob has `*`, and covers what is below it anyway), and the escaped
        // `!a` form of an upper-case letter (rules match the module path as written in go.mod).
        if glob.split('/').any(str::is_empty) {
            return Err(format!("{text:?}: the module glob has an empty path element"));
        }
        if glob.contains("...") {
            return Err(format!(
                "{text:?}: `...` is a package pattern, not a glob; a glob covers every module below it (write {:?})",
                glob.replace("/...", "").replace("...", "*")
            ));
        }
        if glob.contains('!') {
            return Err(format!(
                "{text:?}: write the module path as go.mod does (github.com/Azure/x), not escaped (github.com/!azure/x)"
            ));
        }
        let mut comparisons = Vec::new();
        if let Some(constraint) = constraint {
            for part in constraint.split(',') {
                comparisons.push(parse_comparison(part.trim()).map_err(|why| format!("{text:?}: {why}"))?);
            }
        }
        Ok(Self {
            text: text.to_owned(),
            glob: glob.to_owned(),
            constraint: comparisons,
        })
    }

    /// The rule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the rule covers every version of the modules it matches.
    pub fn is_whole_module(&self) -> bool {
        self.constraint.is_empty()
    }

    /// Whether the glob matches `module` (whatever the version).
    pub fn matches_module(&self, module: &str) -> bool {
        pattern::match_prefix_patterns(&self.glob, module)
    }

    /// Whether the rule matches `module` at `version`.
    pub fn matches(&self, module: &str, version: &str) -> bool {
        self.matches_module(module) && self.constraint.iter().all(|(op, bound)| op.holds(version, bound))
    }
}

fn parse_comparison(part: &str) -> Result<(Op, String), String> {
    let (op, version) = if let Some(v) = part.strip_prefix("<=") {
        (Op::LessOrEqual, v)
    } else if let Some(v) = part.strip_prefix(">=") {
        (Op::GreaterOrEqual, v)
    } else if let Some(v) = part.strip_prefix('<') {
        (Op::Less, v)
    } else if let Some(v) = part.strip_prefix('>') {
        (Op::Greater, v)
    } else if let Some(v) = part.strip_prefix('=') {
        (Op::Equal, v)
    } else {
        (Op::Equal, part)
    };
    let version = version.trim();
    if version.is_empty() {
        return Err("a version constraint is empty (write e.g. @<v1.2.0 or @>=v1.0.0,<v2.0.0)".into());
    }
    if !semver::is_valid(version) {
        return Err(format!(
            "{version:?} is not a semantic version (Go's form: a leading v, as in v1.2.3)"
        ));
    }
    // `v1` would read as "the v1 series" but compares as v1.0.0: only full versions.
    if semver::canonical(version).as_deref() != Some(version) {
        return Err(format!(
            "{version:?}: write a full version ({}), without build metadata",
            semver::canonical(version).unwrap_or_default()
        ));
    }
    Ok((op, version.to_owned()))
}

/// Why a module or version is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A deny rule matches; its text.
    Denied(String),
    /// Allow rules exist and none matches.
    NotAllowed,
}

/// A proxy repo's allow and deny rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

impl Rules {
    /// Parses both lists; the errors name every bad rule.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut parse_all = |list: &[String], which: &str| -> Vec<Rule> {
            list.iter()
                .filter_map(|text| {
                    Rule::parse(text)
                        .map_err(|why| problems.push(format!("{which} rule {why}")))
                        .ok()
                })
                .collect()
        };
        let allow = parse_all(allow, "allow");
        let deny = parse_all(deny, "deny");
        if problems.is_empty() {
            Ok(Self { allow, deny })
        } else {
            Err(problems)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether the whole module is refused: a deny rule without a constraint matches it, or
    /// allow rules exist and none of their globs matches it. (A module refused only at some
    /// versions passes here; see [`Rules::check_version`].)
    pub fn check_module(&self, module: &str) -> Result<(), Refusal> {
        if let Some(rule) = self
            .deny
            .iter()
            .find(|r| r.is_whole_module() && r.matches_module(module))
        {
            return Err(Refusal::Denied(rule.text.clone()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches_module(module)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }

    /// Whether `module` at `version` is refused.
    pub fn check_version(&self, module: &str, version: &str) -> Result<(), Refusal> {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(module, version)) {
            return Err(Refusal::Denied(rule.text.clone()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches(module, version)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> Rules {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Rules::parse(&own(allow), &own(deny)).unwrap()
    }

    #[test]
    fn deny_by_glob_covers_every_module_below_it() {
        let r = rules(&[], &["github.com/bad/*", "example.com/whole"]);
        assert_eq!(
            r.check_module("github.com/bad/x"),
            Err(Refusal::Denied("github.com/bad/*".into()))
        );
        assert!(
            r.check_module("github.com/bad/x/v2").is_err(),
            "a prefix match, as GOPRIVATE"
        );
        assert!(r.check_module("example.com/whole/sub").is_err());
        assert!(r.check_module("github.com/bad").is_ok(), "the glob has two slashes");
        assert!(r.check_module("github.com/good/x").is_ok());
        assert!(r.check_version("github.com/bad/x", "v1.0.0").is_err());
        assert!(r.check_version("github.com/good/x", "v1.0.0").is_ok());
    }

    #[test]
    fn a_constrained_deny_refuses_only_those_versions() {
        let r = rules(&[], &["github.com/pkg/errors@<v0.9.0"]);
        assert!(
            r.check_module("github.com/pkg/errors").is_ok(),
            "the module as such is served"
        );
        for denied in ["v0.8.1", "v0.9.0-rc.1", "v0.1.0-20190101000000-abcdefabcdef"] {
            assert!(r.check_version("github.com/pkg/errors", denied).is_err(), "{denied}");
        }
        for served in ["v0.9.0", "v0.9.1", "v1.0.0+incompatible"] {
            assert!(r.check_version("github.com/pkg/errors", served).is_ok(), "{served}");
        }
    }

    #[test]
    fn spaces_around_the_parts_are_ignored() {
        let r = rules(&[], &[" example.com/m @ >= v1.2.0 , < v1.3.0 "]);
        assert!(r.check_version("example.com/m", "v1.2.5").is_err());
        assert!(r.check_version("example.com/m", "v1.3.0").is_ok());
    }

    #[test]
    fn ranges_need_every_comparison_to_hold() {
        let r = rules(
            &[],
            &[
                "example.com/m@>=v1.2.0,<v1.3.0",
                "example.com/n@v2.0.0",
                "example.com/o@=v1.0.0",
            ],
        );
        assert!(r.check_version("example.com/m", "v1.1.9").is_ok());
        assert!(r.check_version("example.com/m", "v1.2.0").is_err());
        assert!(r.check_version("example.com/m", "v1.2.9").is_err());
        assert!(r.check_version("example.com/m", "v1.3.0").is_ok());
        assert!(r.check_version("example.com/n", "v2.0.0").is_err());
        assert!(r.check_version("example.com/n", "v2.0.1").is_ok());
        assert!(
            r.check_version("example.com/o", "v1.0.0+meta").is_err(),
            "build metadata is ignored"
        );
        let r = rules(&[], &["example.com/p@>v1.0.0", "example.com/q@<=v1.0.0"]);
        assert!(r.check_version("example.com/p", "v1.0.0").is_ok());
        assert!(r.check_version("example.com/p", "v1.0.1").is_err());
        assert!(r.check_version("example.com/q", "v1.0.0").is_err());
        assert!(r.check_version("example.com/q", "v1.0.1").is_ok());
    }

    #[test]
    fn with_allow_rules_only_matching_modules_and_versions_are_served() {
        let r = rules(
            &["github.com/acme", "golang.org/x/mod@>=v0.10.0"],
            &["github.com/acme/secret"],
        );
        assert!(r.check_module("github.com/acme/tool").is_ok());
        assert_eq!(r.check_module("github.com/other/x"), Err(Refusal::NotAllowed));
        assert!(
            r.check_module("github.com/acme/secret").is_err(),
            "deny wins over allow"
        );
        assert!(r.check_module("golang.org/x/mod").is_ok(), "some versions are allowed");
        assert_eq!(r.check_version("golang.org/x/mod", "v0.9.0"), Err(Refusal::NotAllowed));
        assert!(r.check_version("golang.org/x/mod", "v0.12.0").is_ok());
        assert!(rules(&[], &[]).check_version("anything.example/x", "v1.0.0").is_ok());
    }

    #[test]
    fn bad_rules_are_named() {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let bad = [
            ("", "empty"),
            ("@v1.0.0", "empty"),
            ("a,b", "one module glob"),
            ("a b", "no spaces"),
            ("example.com/[", "not a valid glob"),
            ("example.com/m@", "constraint is empty"),
            ("example.com/m@<", "constraint is empty"),
            ("example.com/m@<1.0.0", "not a semantic version"),
            ("example.com/m@>=v1.0.0,", "constraint is empty"),
            ("example.com/m@~v1.0.0", "not a semantic version"),
            ("example.com/m@v1", "write a full version (v1.0.0)"),
            ("example.com/m@<v1.2", "write a full version (v1.2.0)"),
            ("example.com/m@v1.0.0+meta", "without build metadata"),
            ("/", "empty path element"),
            ("github.com//x", "empty path element"),
            ("github.com/bad/", "empty path element"),
            ("github.com/bad/...", "package pattern"),
            ("github.com/!azure/x", "not escaped"),
        ];
        for (text, why) in bad {
            let err = Rules::parse(&[], &own(&[text])).unwrap_err();
            assert_eq!(err.len(), 1, "{text}: {err:?}");
            assert!(err[0].starts_with("deny rule "), "{text}: {err:?}");
            assert!(err[0].contains(why), "{text}: {err:?}");
        }
        let err = Rules::parse(&own(&["x@bad"]), &own(&["y@<also"])).unwrap_err();
        assert_eq!(err.len(), 2, "every bad rule is named: {err:?}");
    }
}
