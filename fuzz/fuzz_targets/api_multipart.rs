//! The one-request publish (`POST /api/v1/repos/{repo}/publish`, `multipart/form-data`),
//! through the real router, multer, the handler and the store. The input is the body, sent
//! with a fixed boundary. Whatever the body: never a 5xx; errors are JSON naming the problem;
//! no transaction is left open (a failed publish rolls back); and a publish that succeeds
//! answers a manifest whose every file reads back with the size and sha256 it lists.
#![no_main]

use std::sync::LazyLock;

use http::Method;
use intact_core::{Digest, Manifest};
use intact_fuzz::{Server, check_api_answer};
use libfuzzer_sys::fuzz_target;

static SERVER: LazyLock<Server> = LazyLock::new(|| Server::start("api_multipart"));

pub const BOUNDARY: &str = "intactfuzzboundary";

fuzz_target!(|data: &[u8]| {
    let s = &*SERVER;
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let a = s.send(
        Method::POST,
        "/api/v1/repos/files/publish",
        &[("content-type", content_type.as_bytes())],
        data.to_vec(),
    );
    check_api_answer("publish", &a);
    let left_open = s.close_open_transactions();
    assert!(
        left_open.is_empty(),
        "publish answered {} but left {left_open:?} open",
        a.status
    );
    if !a.status.is_success() {
        return;
    }
    let m: Manifest = serde_json::from_slice(&a.body).unwrap_or_else(|e| {
        panic!(
            "{} without a manifest: {e}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        )
    });
    let base = format!("/api/v1/repos/{}/{}/@v/{}", m.repo, m.name, m.version);
    let stored = s.send(Method::GET, &base, &[], Vec::new());
    assert_eq!(stored.status, 200);
    let stored: Manifest = serde_json::from_slice(&stored.body).expect("stored manifest");
    assert_eq!(stored, m, "the answer and the stored manifest differ");
    for f in &m.files {
        let read = s.send(Method::GET, &format!("{base}/{}", f.path), &[], Vec::new());
        assert_eq!(read.status, 200, "{}", f.path);
        assert_eq!(read.body.len() as u64, f.size, "{}", f.path);
        assert_eq!(Digest::of(&read.body), f.sha256, "{}", f.path);
    }
});
