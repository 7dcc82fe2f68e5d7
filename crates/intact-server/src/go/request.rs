//! What a GOPROXY protocol path asks for. Paths arrive percent-decoded by the router; the
//! module path and version are then `!`-unescaped and checked against Go's own grammar
//! (`golang.org/x/mod/module`) before anything else looks at them, so `..`, `%2e%2e`, upper
//! case without `!` and the like never get further than this file.
//!
//! Anything that is not a well-formed protocol request is "not found" (404), never 400: the
//! go command treats 400 as a hard error, while a 404 lets it, and group repos, move on.

use intact_go::module_path;

use super::error::ProxyError;

/// One of the three files of a module version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Info,
    Mod,
    Zip,
}

impl FileKind {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Mod => "mod",
            Self::Zip => "zip",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Info => "application/json",
            Self::Mod => "text/plain; charset=utf-8",
            Self::Zip => "application/zip",
        }
    }
}

/// A parsed protocol request. `module` is the decoded module path (case preserved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoRequest {
    /// `{module}/@v/list`
    List { module: String },
    /// `{module}/@latest`
    Latest { module: String },
    /// `{module}/@v/{version}.{info,mod,zip}`. `version` is decoded but not necessarily
    /// canonical: `@v/master.info` is a query the go command sends to resolve a branch.
    File {
        module: String,
        version: String,
        kind: FileKind,
    },
}

fn not_found(path: &str, why: impl std::fmt::Display) -> ProxyError {
    let path: String = path.chars().take(300).collect();
    ProxyError::NotFound(format!("not found: {path}: {why}"))
}

fn module_of(path: &str, escaped: &str) -> Result<String, ProxyError> {
    module_path::unescape_path(escaped).map_err(|e| not_found(path, e))
}

/// Parses the part of the URL after `/go/{repo}/`.
pub fn parse(path: &str) -> Result<GoRequest, ProxyError> {
    if let Some(escaped) = path.strip_suffix("/@latest") {
        return Ok(GoRequest::Latest {
            module: module_of(path, escaped)?,
        });
    }
    // Module paths cannot contain '@', so the first "/@v/" ends the module path.
    let Some((escaped, rest)) = path.split_once("/@v/") else {
        return Err(not_found(
            path,
            "expected {module}/@v/list, {module}/@v/{version}.{info,mod,zip} or {module}/@latest",
        ));
    };
    let module = module_of(path, escaped)?;
    if rest == "list" {
        return Ok(GoRequest::List { module });
    }
    let (escaped_version, kind) = if let Some(v) = rest.strip_suffix(".info") {
        (v, FileKind::Info)
    } else if let Some(v) = rest.strip_suffix(".mod") {
        (v, FileKind::Mod)
    } else if let Some(v) = rest.strip_suffix(".zip") {
        (v, FileKind::Zip)
    } else {
        return Err(not_found(
            path,
            "expected list, {version}.info, {version}.mod or {version}.zip after /@v/",
        ));
    };
    if escaped_version.contains('/') {
        return Err(not_found(path, "a version is one path element"));
    }
    let version = module_path::unescape_version(escaped_version).map_err(|e| not_found(path, e))?;
    Ok(GoRequest::File { module, version, kind })
}

/// Whether `version` is the canonical spelling of a version that fits `module` (the only
/// versions intact stores): `v1.2.3`, `v2.0.0+incompatible`, pseudo-versions...
pub fn canonical_for(module: &str, version: &str) -> Result<(), ProxyError> {
    module_path::check_canonical(module, version)
        .map_err(|e| ProxyError::NotFound(format!("not found: {module}@{version}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(module: &str, version: &str, kind: FileKind) -> GoRequest {
        GoRequest::File {
            module: module.into(),
            version: version.into(),
            kind,
        }
    }

    #[test]
    fn protocol_paths() {
        assert_eq!(
            parse("example.com/a/@v/list"),
            Ok(GoRequest::List {
                module: "example.com/a".into()
            })
        );
        assert_eq!(
            parse("example.com/a/@latest"),
            Ok(GoRequest::Latest {
                module: "example.com/a".into()
            })
        );
        assert_eq!(
            parse("example.com/a/@v/v1.2.3.info"),
            Ok(file("example.com/a", "v1.2.3", FileKind::Info))
        );
        assert_eq!(
            parse("example.com/a/v2/@v/v2.0.1.mod"),
            Ok(file("example.com/a/v2", "v2.0.1", FileKind::Mod))
        );
        assert_eq!(
            parse("example.com/a/@v/v2.0.0+incompatible.zip"),
            Ok(file("example.com/a", "v2.0.0+incompatible", FileKind::Zip))
        );
        assert_eq!(
            parse("example.com/p/@v/v0.0.0-20240102030405-abcdefabcdef.info"),
            Ok(file(
                "example.com/p",
                "v0.0.0-20240102030405-abcdefabcdef",
                FileKind::Info
            ))
        );
        // A branch query passes parsing; whether it is served is the repo's business.
        assert_eq!(
            parse("example.com/a/@v/master.info"),
            Ok(file("example.com/a", "master", FileKind::Info))
        );
    }

    #[test]
    fn case_encoding() {
        assert_eq!(
            parse("github.com/!azure/azure-sdk-for-go/@v/v1.0.0.mod"),
            Ok(file("github.com/Azure/azure-sdk-for-go", "v1.0.0", FileKind::Mod))
        );
        assert_eq!(
            parse("example.com/a/@v/v1.0.0-!r!c1.info"),
            Ok(file("example.com/a", "v1.0.0-RC1", FileKind::Info))
        );
        // Raw upper case is not the escaped spelling of anything.
        for bad in [
            "github.com/Azure/x/@v/list",
            "example.com/a/@v/v1.0.0-RC1.info",
            "github.com/!!a/x/@v/list",
        ] {
            assert_eq!(parse(bad).map_err(|e| e.status().as_u16()), Err(404), "{bad}");
        }
    }

    #[test]
    fn garbage_is_not_found_never_a_panic() {
        for bad in [
            "",
            "@v/list",
            "example.com/a",
            "example.com/a/@v/",
            "example.com/a/@v/v1.0.0",
            "example.com/a/@v/v1.0.0.tar",
            "example.com/a/@v/v1/x.info",
            "example.com/../etc/@v/list",
            "../etc/passwd/@v/list",
            "/example.com/a/@v/list",
            "example.com//a/@v/list",
            "example.com/a/@v/../../x.info",
            "example.com/a/@v/..info",
            "noslash/@v/list",
            "example.com/a\0b/@v/list",
            "example.com/ä/@v/list",
            "example.com/a/@latest/x",
            "sumdb/sum.golang.org/supported",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.is_not_found(), "{bad}: {err:?}");
        }
    }

    #[test]
    fn canonical_versions() {
        assert!(canonical_for("example.com/a", "v1.2.3").is_ok());
        assert!(canonical_for("example.com/a", "v2.0.0+incompatible").is_ok());
        assert!(canonical_for("example.com/a/v2", "v2.0.0").is_ok());
        for (m, v) in [
            ("example.com/a", "v1.2"),
            ("example.com/a", "master"),
            ("example.com/a/v2", "v1.0.0"),
            ("example.com/a", "v2.0.0"),
        ] {
            assert!(canonical_for(m, v).expect_err(v).is_not_found(), "{m}@{v}");
        }
    }
}
