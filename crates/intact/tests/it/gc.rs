//! Start-up and garbage collection that do not grow with the store: the server answers
//! before its background sweep has done anything, a sweep killed with SIGKILL resumes where
//! it stopped, and nothing committed is lost on the way.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::{BIN, Server, blob_files, client, runtime};

/// Replacements of one path inside one transaction: each leaves the blob before it
/// unreferenced once the version commits.
const TAKES: usize = 120;
/// Blob files planted beside the store that the catalog never heard of.
const ORPHANS: usize = 30;

fn config(page: u32, pause_ms: u64) -> String {
    format!(
        r#"
[store]
gc_grace_seconds = 0
gc_interval_seconds = 3600
orphan_sweep_interval_seconds = 3600
gc_page_size = {page}
gc_page_pause_ms = {pause_ms}

[[repo]]
name = "files"
kind = "hosted"
"#
    )
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn gc_status(http: &reqwest::Client, server: &Server) -> Value {
    http.get(server.url("/api/v1/admin/gc"))
        .send()
        .await
        .expect("gc status")
        .error_for_status()
        .expect("gc status ok")
        .json()
        .await
        .expect("gc status json")
}

/// Polls the sweeper's status until `done` says so (at most two minutes).
async fn wait_for(http: &reqwest::Client, server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = gc_status(http, server).await;
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "waited 2 min for {what}; last status {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn start_up_serves_before_the_background_sweep_and_a_killed_sweep_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rt = runtime();
    let http = client();

    // A store with garbage: a version whose one file was replaced TAKES times (TAKES - 1
    // unreferenced blobs), and orphan files. No background pass runs yet (a long pause).
    let server = Server::start(&data, Some(&config(1000, 0)), &["--gc-interval-seconds", "0"]);
    let last_take = rt.block_on(async {
        let txn: Value = http
            .post(server.url("/api/v1/repos/files/transactions"))
            .json(&json!({"name": "takes", "version": "1"}))
            .send()
            .await
            .expect("begin")
            .error_for_status()
            .expect("begin ok")
            .json()
            .await
            .expect("txn");
        let id = txn["id"].as_str().expect("id").to_owned();
        let mut last = Vec::new();
        for take in 0..TAKES {
            last = format!("take {take} of the only file").into_bytes();
            http.put(server.url(&format!("/api/v1/transactions/{id}/files/shot.exr")))
                .body(last.clone())
                .send()
                .await
                .expect("put")
                .error_for_status()
                .expect("put ok");
        }
        http.post(server.url(&format!("/api/v1/transactions/{id}/commit")))
            .send()
            .await
            .expect("commit")
            .error_for_status()
            .expect("commit ok");
        last
    });
    server.kill9();
    let kept = hex_sha256(&last_take);
    assert_eq!(
        blob_files(&data).len(),
        TAKES,
        "every take's blob is on disk before any sweep"
    );
    let mut orphans = Vec::new();
    for i in 0..ORPHANS {
        let bytes = format!("orphan {i}");
        let hex = hex_sha256(bytes.as_bytes());
        let shard = data.join("blobs").join("sha256").join(&hex[..2]);
        std::fs::create_dir_all(&shard).expect("shard");
        std::fs::write(shard.join(&hex), bytes).expect("orphan");
        orphans.push(hex);
    }

    // Start-up sweeps nothing: the server answers, reads and publishes while the background
    // pass (pages of 10, 300 ms apart) has only begun.
    let server = Server::start(&data, Some(&config(10, 300)), &[]);
    let first_status = rt.block_on(async {
        let ready = http.get(server.url("/readyz")).send().await.expect("readyz");
        assert!(ready.status().is_success(), "readyz: {}", ready.status());
        let body = http
            .get(server.url("/api/v1/repos/files/takes/@v/1/shot.exr"))
            .send()
            .await
            .expect("read")
            .bytes()
            .await
            .expect("body");
        assert_eq!(body.as_ref(), last_take.as_slice());
        let status = gc_status(&http, &server).await;
        assert!(
            status["last_pass"].is_null(),
            "the server answered before its first background pass ended: {status}"
        );
        status
    });
    let on_disk = blob_files(&data);
    assert!(
        on_disk.len() >= TAKES + ORPHANS - 20,
        "start-up itself deleted nothing but, at most, a first page or two ({} of {} left): {first_status}",
        on_disk.len(),
        TAKES + ORPHANS
    );

    // Killed in the middle of the blob walk...
    let interrupted = rt.block_on(wait_for(&http, &server, "three pages", |s| {
        s["so_far"]["pages"].as_u64().unwrap_or(0) >= 3
    }));
    server.kill9();
    assert_eq!(interrupted["phase"], json!("blobs"), "{interrupted}");
    let cursor = interrupted["cursor"].as_str().expect("a cursor saved").to_owned();

    // ...the record says where it stopped, read straight from the catalog...
    let out = std::process::Command::new(BIN)
        .args(["gc", "--status", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("intact gc --status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(saved["phase"], json!("blobs"), "{saved}");
    assert_eq!(saved["running"], json!(false), "{saved}");
    assert!(saved["cursor"].as_str().expect("cursor") >= cursor.as_str(), "{saved}");
    let human = std::process::Command::new(BIN)
        .args(["gc", "--status", "--data-dir"])
        .arg(&data)
        .output()
        .expect("intact gc --status");
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        human.contains("interrupted: pass 1 stopped in its blobs phase"),
        "{human}"
    );

    // ...and the next start resumes it (an embedded store takes its dead predecessor's lease back).
    let server = Server::start(&data, Some(&config(10, 0)), &[]);
    let done = rt.block_on(wait_for(&http, &server, "the pass to end", |s| {
        !s["last_pass"].is_null()
    }));
    let last = &done["last_pass"];
    assert_eq!(last["pass"], json!(1), "{done}");
    assert!(
        last["resumed"].as_u64().unwrap_or(0) >= 1,
        "the pass was resumed: {done}"
    );
    assert_eq!(last["swept_orphans"], json!(true), "{done}");
    let counts = &last["counts"];
    assert_eq!(counts["blobs_deleted"], json!(TAKES - 1), "{done}");
    assert_eq!(counts["orphan_blobs_deleted"], json!(ORPHANS), "{done}");
    // Resumed, not restarted: the walk looked at each record about once (a page done but not
    // yet saved when the kill came is looked at again).
    let checked = counts["blobs_checked"].as_u64().unwrap_or(0);
    assert!(
        (TAKES as u64..TAKES as u64 + 20).contains(&checked),
        "{checked} records checked for {TAKES}: {done}"
    );
    let left = blob_files(&data);
    assert_eq!(
        left.into_iter().collect::<Vec<_>>(),
        vec![kept],
        "only the kept take is left"
    );
    rt.block_on(async {
        let body = http
            .get(server.url("/api/v1/repos/files/takes/@v/1/shot.exr"))
            .send()
            .await
            .expect("read")
            .bytes()
            .await
            .expect("body");
        assert_eq!(body.as_ref(), last_take.as_slice());
        let verify: Value = http
            .post(server.url("/api/v1/admin/verify"))
            .json(&json!({}))
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("verify json");
        assert_eq!(verify["ok"], json!(true), "{verify}");
        let status = gc_status(&http, &server).await;
        assert_eq!(status["running"], json!(false), "{status}");
        assert!(status["next_pass_due"].is_string(), "{status}");
    });
    drop(orphans);
}
