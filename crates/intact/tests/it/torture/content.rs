//! What every version of the torture suites must hold, derived from its name alone, and the
//! two upstreams serving it: a fake GOPROXY over HTTP that builds module zips on demand, and
//! a `file://` build archive for staging. A checker can thus tell a whole version from a
//! partial or mixed one without remembering anything.

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use intact_go::{dirhash, info::Info};
use sha2::{Digest as _, Sha256};

use crate::harness::{pattern, seed_of};

/// The expected files of a version: (path, size, sha256 hex), sorted by path.
pub type Files = Vec<(String, u64, String)>;

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn summarize(files: Vec<(String, Vec<u8>)>) -> Files {
    let mut out: Files = files
        .into_iter()
        .map(|(p, b)| {
            let size = b.len() as u64;
            (p, size, sha256_hex(&b))
        })
        .collect();
    out.sort();
    out
}

/// How big the files of a suite are: the power-loss suite keeps everything in memory.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Upper bound of a large file (one in six files is large).
    pub large: usize,
    /// Upper bound of a small file.
    pub small: usize,
}

/// The files a publisher puts in a version, keyed by `seed_key` (the version, or the job's
/// idempotency key for `auto` versions).
pub fn api_files(name: &str, seed_key: &str, sizes: Sizes) -> Vec<(String, Vec<u8>)> {
    let seed = seed_of(&format!("{name}@{seed_key}"));
    let count = 1 + (seed % 3) as usize;
    (0..count)
        .map(|i| {
            let s = seed.wrapping_add(i as u64 * 7919);
            let size = if s.is_multiple_of(6) {
                sizes.large / 4 + (s as usize % (sizes.large - sizes.large / 4))
            } else {
                1 + (s as usize % sizes.small)
            };
            let path = match i {
                0 => "f0.bin".to_owned(),
                1 => "nested/dir/f1.bin".to_owned(),
                _ => format!("f{i}.bin"),
            };
            // Shared content now and then, so deduplication is exercised too.
            let content_seed = if s % 5 == 1 { s % 7 } else { s };
            (path, pattern(content_seed, size))
        })
        .collect()
}

pub fn api_summary(name: &str, seed_key: &str, sizes: Sizes) -> Files {
    summarize(api_files(name, seed_key, sizes))
}

// ---------------------------------------------------------------------------------------------
// Go modules.

/// One module version as the fake upstream serves it.
pub struct GoVersion {
    pub info: Vec<u8>,
    pub go_mod: Vec<u8>,
    pub zip: Vec<u8>,
    pub h1: String,
}

impl GoVersion {
    fn build(module: &str, version: &str, sizes: Sizes) -> GoVersion {
        let seed = seed_of(&format!("{module}@{version}"));
        let go_mod = format!("module {module}\n\ngo 1.19\n").into_bytes();
        let prefix = format!("{module}@{version}/");
        let mut files: Vec<(String, Vec<u8>)> = vec![
            ("go.mod".into(), go_mod.clone()),
            (
                "m.go".into(),
                format!("package m\n\nconst Version = \"{version}\"\n").into_bytes(),
            ),
        ];
        if seed.is_multiple_of(3) {
            // Some bulk (hex text) so a kill can land mid-download.
            let bulk: String = pattern(seed, sizes.large / 2)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            files.push(("data.txt".into(), bulk.into_bytes()));
        }
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (path, bytes) in &files {
            w.start_file(format!("{prefix}{path}"), opts).expect("zip entry");
            w.write_all(bytes).expect("zip data");
        }
        let zip = w.finish().expect("zip").into_inner();
        let h1 = dirhash::hash_zip(Cursor::new(&zip)).expect("h1");
        let info = Info::new(version, "2024-05-01T00:00:00Z").expect("info").to_json();
        GoVersion { info, go_mod, zip, h1 }
    }

    /// The files of the complete stored version.
    pub fn full(&self) -> Files {
        summarize(vec![
            ("info.json".into(), self.info.clone()),
            ("go.mod".into(), self.go_mod.clone()),
            ("module.zip".into(), self.zip.clone()),
        ])
    }

    /// The files of the `.mod`-only (`@gomod/...`) version.
    pub fn mod_only(&self) -> Files {
        summarize(vec![
            ("info.json".into(), self.info.clone()),
            ("go.mod".into(), self.go_mod.clone()),
        ])
    }
}

/// Module versions, built once each.
pub struct GoModules {
    sizes: Sizes,
    built: Mutex<HashMap<(String, String), Arc<GoVersion>>>,
}

impl GoModules {
    pub fn new(sizes: Sizes) -> Self {
        GoModules {
            sizes,
            built: Mutex::default(),
        }
    }

    pub fn get(&self, module: &str, version: &str) -> Arc<GoVersion> {
        let key = (module.to_owned(), version.to_owned());
        if let Some(v) = self.built.lock().expect("lock").get(&key) {
            return v.clone();
        }
        let v = Arc::new(GoVersion::build(module, version, self.sizes));
        self.built.lock().expect("lock").insert(key, v.clone());
        v
    }
}

/// A fake GOPROXY on loopback: `{module}/@v/{version}.{info,mod,zip}` for any module under
/// `example.com/torture/` and any `v1.0.N`; large zips are sent in slow chunks.
pub struct GoUpstream {
    pub base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl GoUpstream {
    pub fn start(modules: Arc<GoModules>) -> GoUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = modules;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(move |uri: Uri| {
                    let served = served.clone();
                    async move { answer(&served, &uri) }
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        GoUpstream { base, _stop: stop_tx }
    }
}

fn answer(modules: &GoModules, uri: &Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let Some((module, file)) = path.split_once("/@v/") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if !module.starts_with("example.com/torture/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    if file == "list" {
        return (StatusCode::OK, "").into_response();
    }
    let Some((version, ext)) = file.rsplit_once('.') else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if !version.starts_with("v1.0.") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let v = modules.get(module, version);
    match ext {
        "info" => (StatusCode::OK, v.info.clone()).into_response(),
        "mod" => (StatusCode::OK, v.go_mod.clone()).into_response(),
        "zip" if v.zip.len() > 64 * 1024 => {
            let chunks: Vec<Vec<u8>> = v.zip.chunks(v.zip.len().div_ceil(8)).map(<[u8]>::to_vec).collect();
            let stream = futures::stream::iter(chunks).then(|c| async move {
                tokio::time::sleep(Duration::from_millis(15)).await;
                Ok::<_, std::io::Error>(c)
            });
            Response::builder()
                .header("content-length", v.zip.len())
                .body(Body::from_stream(stream))
                .expect("response")
        }
        "zip" => (StatusCode::OK, v.zip.clone()).into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

use futures::StreamExt as _;

// ---------------------------------------------------------------------------------------------
// Staging.

/// The artifacts of the staging repo, as configured.
pub const STAGING_ARTIFACTS: &str = r#"payload = { files = ["payload.bin", "payload.json"] }
suite   = { files = ["suite.tar.gz"], extract = true }
"#;

/// The files of a build directory upstream, and what each artifact's version must hold.
pub struct Build {
    pub upstream_files: Vec<(String, Vec<u8>)>,
    pub payload: Files,
    pub suite: Files,
}

pub fn build(name: &str, sizes: Sizes) -> Build {
    let seed = seed_of(name);
    let bin = pattern(seed, 1 + (seed as usize % sizes.large));
    let json = format!("{{\"build\": \"{name}\"}}").into_bytes();
    let entries: Vec<(String, Vec<u8>)> = (0..2 + seed % 6)
        .map(|i| {
            (
                format!("suite/d{}/f{i}.bin", i % 2),
                pattern(
                    seed.wrapping_add(i),
                    1 + ((seed >> 8) as usize + i as usize * 997) % sizes.small,
                ),
            )
        })
        .collect();
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data.as_slice()).expect("tar entry");
    }
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let tgz = gz.finish().expect("gzip");
    Build {
        payload: summarize(vec![
            ("payload.bin".into(), bin.clone()),
            ("payload.json".into(), json.clone()),
        ]),
        suite: summarize(entries),
        upstream_files: vec![
            ("payload.bin".into(), bin),
            ("payload.json".into(), json),
            ("suite.tar.gz".into(), tgz),
        ],
    }
}

/// Writes a build directory into the `file://` upstream.
pub fn write_build(root: &Path, name: &str, b: &Build) -> PathBuf {
    let dir = name.split('/').fold(root.to_owned(), |p, s| p.join(s));
    std::fs::create_dir_all(&dir).expect("mkdir build");
    for (file, bytes) in &b.upstream_files {
        std::fs::write(dir.join(file), bytes).expect("write upstream file");
    }
    dir
}
