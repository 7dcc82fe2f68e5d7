//! GOPROXY protocol paths (`{module}/@v/{version}.info`, `/@v/list`, `/@latest`), as the
//! router hands them over after percent-decoding. What parses is a valid module path and a
//! version whose escaped spellings rebuild exactly the path asked for (so one request has one
//! meaning); what does not parse is "not found", never a 400 the go command would stop at.
#![no_main]

use intact_go::module_path;
use intact_server::go::request::{GoRequest, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    match parse(path) {
        Ok(req) => {
            let module = match &req {
                GoRequest::List { module } | GoRequest::Latest { module } | GoRequest::File { module, .. } => module,
            };
            assert!(module_path::check_path(module).is_ok(), "{path:?} -> {module:?}");
            let escaped = module_path::escape_path(module).expect("a valid module path escapes");
            let rebuilt = match &req {
                GoRequest::List { .. } => format!("{escaped}/@v/list"),
                GoRequest::Latest { .. } => format!("{escaped}/@latest"),
                GoRequest::File { version, kind, .. } => {
                    assert!(!version.contains('/'), "{path:?}");
                    let v = module_path::escape_version(version).expect("a decoded version escapes");
                    format!("{escaped}/@v/{v}.{}", kind.extension())
                }
            };
            assert_eq!(rebuilt, path, "{req:?}");
        }
        Err(e) => assert!(e.is_not_found(), "{path:?}: {e:?}"),
    }
});
