//! The checks a module version passes before it is committed, whether it came from an
//! upstream or from `intact go publish`: the `.info` names the requested version, the `.mod`
//! declares the requested module, the zip obeys `golang.org/x/mod/zip`'s rules for exactly
//! `module@version`. All of it is `intact_go`; this file only says what failing means here.

use std::path::PathBuf;

use intact_go::{GoError, dirhash, gomod, info, zip};

/// A module zip that passed [`zip::check_zip`], with the facts a commit records.
#[derive(Debug, Clone)]
pub struct CheckedZip {
    /// The root go.mod, if the zip has one.
    pub go_mod: Option<Vec<u8>>,
    /// `dirhash.HashZip`: the `h1:` line go.sum gets for this version.
    pub h1: String,
    pub files: usize,
}

/// Checks a `.info` document for `version`; the reason names what is wrong.
pub fn info_for(bytes: &[u8], version: &str) -> Result<info::Info, String> {
    let info = info::parse_info(bytes).map_err(|e| e.to_string())?;
    if info.version != version {
        return Err(format!("it says Version {:?}, not {version:?}", info.version));
    }
    Ok(info)
}

/// Checks that a `.mod` file does not declare another module. A file without a `module`
/// directive is accepted, as the go command accepts it for a dependency.
pub fn go_mod_for(bytes: &[u8], module: &str) -> Result<(), String> {
    if bytes.len() as u64 > zip::MAX_GO_MOD {
        return Err(format!("larger than {} bytes", zip::MAX_GO_MOD));
    }
    match gomod::parse_module_path(bytes) {
        Ok(Some(declared)) if declared != module => Err(format!("it declares module {declared:?}, not {module:?}")),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks the zip at `path` for `module@version` and hashes it, on a blocking thread (it
/// reads every byte, twice). `Ok(Err(_))` is a zip that breaks the rules; `Err(_)` a local
/// failure to read it.
pub async fn zip_file(path: PathBuf, module: String, version: String) -> Result<Result<CheckedZip, GoError>, String> {
    tokio::task::spawn_blocking(move || {
        let open = || std::fs::File::open(&path).map(std::io::BufReader::new);
        let summary = match open()
            .map_err(GoError::Io)
            .and_then(|f| zip::check_zip(f, &module, &version))
        {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let h1 = match open().map_err(GoError::Io).and_then(dirhash::hash_zip) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(CheckedZip {
            go_mod: summary.go_mod,
            h1,
            files: summary.files,
        }))
    })
    .await
    .map_err(|e| format!("zip check task failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_must_name_the_version() {
        assert!(info_for(br#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#, "v1.0.0").is_ok());
        assert!(info_for(br#"{"Version":"v1.0.0"}"#, "v1.0.0").is_ok());
        assert!(
            info_for(br#"{"Version":"v1.0.1","Time":"2024-01-02T03:04:05Z"}"#, "v1.0.0")
                .expect_err("other")
                .contains("v1.0.1")
        );
        assert!(info_for(b"<html>", "v1.0.0").is_err());
        assert!(info_for(br#"{"Version":"v1.0.0","Time":"yesterday"}"#, "v1.0.0").is_err());
    }

    #[test]
    fn go_mod_must_not_declare_another_module() {
        assert!(go_mod_for(b"module example.com/a\n\ngo 1.19\n", "example.com/a").is_ok());
        assert!(go_mod_for(b"// no module line\ngo 1.19\n", "example.com/a").is_ok());
        assert!(
            go_mod_for(b"module example.com/b\n", "example.com/a")
                .expect_err("other")
                .contains("example.com/b")
        );
        assert!(go_mod_for(b"module Example.com/a\n", "example.com/a").is_err());
        assert!(go_mod_for(b"module a\nmodule b\n", "a").is_err());
    }
}
