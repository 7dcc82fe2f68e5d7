//! The artifact API's parsers of request bodies, paths and query strings, through the real
//! router and handlers over a real store: transaction bodies (`POST .../transactions`), the
//! gc request, event and listing queries, read paths, staging requests, file uploads to any
//! path. Whatever arrives, the answer is never a 5xx, every error is the JSON shape with
//! `error` and `message`, and a file that an upload accepted reads back byte for byte.
//!
//! Input: one selector byte, then the part that goes into the path or query, a NUL, and the
//! body. Long polls are skipped (a `wait_seconds` in a query): waiting is time, not parsing.
#![no_main]

use std::sync::LazyLock;

use http::Method;
use intact_fuzz::{Server, check_api_answer, encode_uri_part};
use libfuzzer_sys::fuzz_target;

static SERVER: LazyLock<Server> = LazyLock::new(|| Server::start("api_json"));

const JSON: (&str, &[u8]) = ("content-type", b"application/json");

fn asks_to_wait(query: &str) -> bool {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().any(|(k, _)| k == "wait_seconds"))
        .unwrap_or(true)
}

/// Opens a transaction on `files` for `name`, uploads `body` at `path`, commits, and checks
/// that whatever was accepted reads back unchanged.
fn upload(s: &Server, path: &str, body: Vec<u8>) {
    let open = s.send(
        Method::POST,
        "/api/v1/repos/files/transactions",
        &[JSON],
        br#"{"name":"fuzz/upload","version":"auto"}"#.to_vec(),
    );
    assert_eq!(open.status, 201, "{}", String::from_utf8_lossy(&open.body));
    let id = open
        .json()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .expect("transaction id");
    let uri = format!("/api/v1/transactions/{id}/files/{}", encode_uri_part(path, b"%"));
    let Some(put) = s.try_send(Method::PUT, &uri, &[], body.clone()) else {
        return;
    };
    check_api_answer(&format!("PUT {uri}"), &put);
    if !put.status.is_success() {
        return;
    }
    let commit = s.send(
        Method::POST,
        &format!("/api/v1/transactions/{id}/commit"),
        &[],
        Vec::new(),
    );
    check_api_answer("commit", &commit);
    assert_eq!(commit.status, 201, "{}", String::from_utf8_lossy(&commit.body));
    let manifest: intact_core::Manifest = serde_json::from_slice(&commit.body).expect("commit answers a manifest");
    let [file] = manifest.files.as_slice() else {
        panic!("one upload, one file: {manifest:?}")
    };
    let read = s.send(
        Method::GET,
        &format!("/api/v1/repos/files/fuzz/upload/@v/{}/{}", manifest.version, file.path),
        &[],
        Vec::new(),
    );
    assert_eq!(read.status, 200, "{}", String::from_utf8_lossy(&read.body));
    assert_eq!(
        read.body.as_ref(),
        body.as_slice(),
        "{path:?} read back different bytes"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (part, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
        None => (rest, Vec::new()),
    };
    let Ok(part) = std::str::from_utf8(part) else { return };
    let s = &*SERVER;
    let answer = match selector % 10 {
        0 => {
            let key: Vec<(&str, &[u8])> = if part.is_empty() {
                vec![JSON]
            } else {
                vec![JSON, ("idempotency-key", part.as_bytes())]
            };
            s.try_send(Method::POST, "/api/v1/repos/files/transactions", &key, body)
        }
        1 => s.try_send(
            Method::POST,
            &format!("/api/v1/repos/{}/transactions", encode_uri_part(part, b"%")),
            &[JSON],
            body,
        ),
        2 => {
            let headers: &[(&str, &[u8])] = if part.is_empty() { &[] } else { &[JSON] };
            s.try_send(Method::POST, "/api/v1/admin/gc", headers, body)
        }
        3 => {
            let q = encode_uri_part(part, b"%");
            if asks_to_wait(&q) {
                return;
            }
            s.try_send(Method::GET, &format!("/api/v1/events?{q}"), &[], body)
        }
        4 => s.try_send(
            Method::GET,
            &format!("/api/v1/repos/{}", encode_uri_part(part, b"%?")),
            &[],
            body,
        ),
        5 => s.try_send(Method::POST, "/api/v1/repos/builds/stage", &[JSON], body),
        6 => {
            let q = encode_uri_part(part, b"%");
            if asks_to_wait(&q) {
                return;
            }
            s.try_send(
                Method::GET,
                &format!("/api/v1/repos/builds/stage/status?{q}"),
                &[],
                body,
            )
        }
        7 => {
            upload(s, part, body);
            None
        }
        8 => s.try_send(
            Method::GET,
            &format!("/api/v1/jobs/{}", encode_uri_part(part, b"%")),
            &[],
            body,
        ),
        _ => {
            let (method, suffix) = match body.first().map_or(0, |b| b % 4) {
                0 => (Method::GET, ""),
                1 => (Method::DELETE, ""),
                2 => (Method::POST, "/renew"),
                _ => (Method::POST, "/commit"),
            };
            let uri = format!("/api/v1/transactions/{}{suffix}", encode_uri_part(part, b"%"));
            s.try_send(method, &uri, &[], Vec::new())
        }
    };
    if let Some(a) = answer {
        check_api_answer(&format!("selector {}", selector % 10), &a);
    }
    // Transactions opened by this input must not lock the next input's versions.
    s.close_open_transactions();
});
