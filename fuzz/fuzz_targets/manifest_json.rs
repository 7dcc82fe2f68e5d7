//! Manifests as JSON, the way a client reads them from a server (`intact get`) or a peer
//! would: a manifest that deserializes has only safe paths and serializes back to itself, and
//! every path the CLI accepts (it checks each `files[].path` with `FilePath::parse` before
//! joining it onto the output directory) stays inside that directory.
#![no_main]

use std::path::{Component, Path};

use intact_core::{FilePath, Manifest};
use libfuzzer_sys::fuzz_target;

/// The CLI's join: one path component per `/`-separated segment.
fn cli_destination(out: &Path, path: &str) -> std::path::PathBuf {
    path.split('/').fold(out.to_owned(), |p, seg| p.join(seg))
}

fn stays_inside(out: &Path, path: &str) {
    let dest = cli_destination(out, path);
    let rel = dest.strip_prefix(out).expect("joined under out");
    assert!(
        rel.components().all(|c| matches!(c, Component::Normal(_))),
        "{path:?} joins to {dest:?}"
    );
    assert_eq!(rel.components().count(), path.split('/').count(), "{path:?}");
}

fuzz_target!(|data: &[u8]| {
    let out = Path::new("/srv/out");
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        for f in &m.files {
            stays_inside(out, f.path.as_str());
        }
        let json = serde_json::to_vec(&m).expect("a manifest serializes");
        let again: Manifest = serde_json::from_slice(&json).expect("a serialized manifest deserializes");
        assert_eq!(again, m);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        for f in v["files"].as_array().into_iter().flatten() {
            if let Some(path) = f["path"].as_str()
                && FilePath::parse(path).is_ok()
            {
                stays_inside(out, path);
            }
        }
    }
});
