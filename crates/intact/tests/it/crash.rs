//! Crash safety, for real: publishers stream files and commit while the server is killed with
//! SIGKILL at varied moments, many times over one data dir. After every restart each version
//! is either fully there with the right bytes or absent, and after the last one garbage
//! collection leaves exactly the referenced blobs and no pending files.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::{Server, blob_files, client, pattern, report, runtime, seed_of, sized};

const PUBLISHERS: u64 = 6;

/// What a publisher puts in version `version` of `name`: derived from the names alone, so a
/// checker can tell a whole version from a partial or mixed one.
fn expected_files(name: &str, version: &str) -> Vec<(String, Vec<u8>)> {
    let seed = seed_of(&format!("{name}@{version}"));
    let count = 1 + (seed % 3) as usize;
    (0..count)
        .map(|i| {
            let s = seed.wrapping_add(i as u64 * 7919);
            // Mostly small files, now and then a few hundred KiB so kills land mid-stream.
            let size = if s.is_multiple_of(4) {
                200_000 + (s % 400_000) as usize
            } else {
                1 + (s % 20_000) as usize
            };
            let path = if i == 1 {
                format!("nested/dir/f{i}.bin")
            } else {
                format!("f{i}.bin")
            };
            (path, pattern(s, size))
        })
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex_encode(&Sha256::digest(bytes))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Publishes versions in a loop until the server dies. Leases are short so transactions
/// orphaned by a kill expire quickly.
async fn publisher(http: reqwest::Client, base: String, task: u64, cycle: u64, published: Arc<AtomicU64>) {
    let name = format!("crash/p{task}");
    for k in 0.. {
        let version = format!("c{cycle}-{k}");
        let files = expected_files(&name, &version);
        let res: anyhow::Result<()> = async {
            let resp = http
                .post(format!("{base}/api/v1/repos/files/transactions"))
                .json(&json!({"name": name, "version": version, "lease_seconds": 2}))
                .send()
                .await?
                .error_for_status()?;
            let txn: Value = resp.json().await?;
            let id = txn["id"].as_str().unwrap_or_default().to_owned();
            for (path, bytes) in &files {
                http.put(format!("{base}/api/v1/transactions/{id}/files/{path}"))
                    .header("x-checksum-sha256", hex_sha256(bytes))
                    .body(bytes.clone())
                    .send()
                    .await?
                    .error_for_status()?;
            }
            http.post(format!("{base}/api/v1/transactions/{id}/commit"))
                .send()
                .await?
                .error_for_status()?;
            published.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        .await;
        if res.is_err() {
            return; // the server was killed (or is dying)
        }
    }
}

/// Every committed version of every publisher is whole: its manifest lists exactly the files
/// it was published with. Versions not in `verified` also have their bytes downloaded and
/// checked (a verified version is immutable, and `intact verify` re-hashes every blob at the
/// end); they are added to `verified`.
async fn check_versions(
    http: &reqwest::Client,
    server: &Server,
    verified: &mut BTreeSet<String>,
) -> (usize, BTreeSet<String>) {
    let mut referenced = BTreeSet::new();
    let mut versions_seen = 0;
    for task in 0..PUBLISHERS {
        let name = format!("crash/p{task}");
        let list: Value = http
            .get(server.url(&format!("/api/v1/repos/files/{name}/@versions?limit=10000")))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list json");
        for v in list["versions"].as_array().into_iter().flatten() {
            let version = v["version"].as_str().expect("version");
            versions_seen += 1;
            let manifest: Value = http
                .get(server.url(&format!("/api/v1/repos/files/{name}/@v/{version}")))
                .send()
                .await
                .expect("manifest")
                .json()
                .await
                .expect("manifest json");
            let expected = expected_files(&name, version);
            let got: Vec<(String, u64, String)> = manifest["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap_or_default().to_owned(),
                        f["size"].as_u64().unwrap_or_default(),
                        f["sha256"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let mut want: Vec<(String, u64, String)> = expected
                .iter()
                .map(|(p, b)| (p.clone(), b.len() as u64, hex_sha256(b)))
                .collect();
            want.sort();
            assert_eq!(
                got, want,
                "{name}@{version} must be whole: exactly the files it was published with"
            );
            let key = format!("{name}@{version}");
            for (_, _, sha) in &got {
                referenced.insert(sha.clone());
            }
            if !verified.insert(key) {
                continue;
            }
            for (path, _, sha) in &got {
                let body = http
                    .get(server.url(&format!("/api/v1/repos/files/{name}/@v/{version}/{path}")))
                    .send()
                    .await
                    .expect("file")
                    .bytes()
                    .await
                    .expect("bytes");
                assert_eq!(&hex_sha256(&body), sha, "{name}@{version}/{path} bytes");
            }
        }
    }
    (versions_seen, referenced)
}

#[test]
fn sigkill_mid_publish_leaves_every_version_whole_or_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rt = runtime();
    let http = client();
    let published = Arc::new(AtomicU64::new(0));
    let mut last_seen = 0;
    let mut verified = BTreeSet::new();
    let cycles: u64 = sized(24, 200);
    for cycle in 0..cycles {
        // Start-up recovery runs on every start; grace 0 so recovery reclaims at once.
        let server = Server::start(&data, None, &["--gc-grace-seconds", "0"]);
        let (seen, _) = rt.block_on(check_versions(&http, &server, &mut verified));

        assert!(
            seen >= last_seen,
            "committed versions never disappear ({seen} < {last_seen})"
        );
        last_seen = seen;

        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|t| {
                rt.spawn(publisher(
                    http.clone(),
                    server.base.clone(),
                    t,
                    cycle,
                    published.clone(),
                ))
            })
            .collect();
        // Kill at varied points: a spread of delays lands in uploads, commits and between.
        let delay = 150 + (seed_of(&format!("cycle{cycle}")) % 700);
        std::thread::sleep(Duration::from_millis(delay));
        server.kill9();
        rt.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
            }
        });
    }

    // Final restart: everything committed is whole; once the short leases run out and gc
    // runs, exactly the referenced blobs remain and nothing is pending.
    let server = Server::start(&data, None, &["--gc-grace-seconds", "0"]);
    let (seen, referenced) = rt.block_on(check_versions(&http, &server, &mut verified));
    assert!(seen >= last_seen);
    let acknowledged = published.load(Ordering::Relaxed) as usize;
    assert!(
        seen >= acknowledged,
        "every acknowledged commit survived: {seen} versions, {acknowledged} acknowledged"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let gc_report: Value = rt.block_on(async {
        http.post(server.url("/api/v1/admin/gc"))
            .json(&json!({"grace_seconds": 0}))
            .send()
            .await
            .expect("gc")
            .json()
            .await
            .expect("gc json")
    });
    let on_disk = blob_files(&server.data_dir);
    assert_eq!(
        on_disk, referenced,
        "after gc, blobs on disk are exactly the referenced ones (gc: {gc_report})"
    );
    let pending: Vec<_> = std::fs::read_dir(data.join("tmp")).expect("tmp").collect();
    assert!(pending.is_empty(), "no pending upload files remain");
    let verify: Value = rt.block_on(async {
        http.post(server.url("/api/v1/admin/verify"))
            .json(&json!({}))
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(verify["ok"], json!(true), "{verify}");
    report(
        "sigkill-publish",
        json!({"cycles": cycles, "versions_committed": seen, "acknowledged": acknowledged,
               "blobs": on_disk.len(), "violations": 0}),
    );
}

/// The render farm's failure: a job publishes, the server dies, the farm retries the job.
/// With an idempotency key per job and `"version": "auto"`, every retry across SIGKILLs must
/// land on the same single version: after all jobs finally succeed, each job owns exactly one
/// version, with its own content, and no job created two.
#[test]
fn farm_retries_across_sigkill_create_exactly_one_version_per_job() {
    const JOBS: usize = 150;
    const FARM_CYCLES: u64 = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rt = runtime();
    let http = client();

    async fn run_jobs(http: reqwest::Client, base: String, farm: u64) -> anyhow::Result<()> {
        let name = format!("farm/f{farm}");
        for job in 0..JOBS {
            let key = format!("farm{farm}-job{job}");
            let files = expected_files(&name, &key);
            let txn: Value = http
                .post(format!("{base}/api/v1/repos/files/transactions"))
                .json(&json!({"name": name, "version": "auto", "idempotency_key": key,
                              "metadata": {"job": key}, "lease_seconds": 2, "wait_seconds": 5}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if txn.get("manifest").is_some() {
                continue; // this job already landed: the retry gets its version back
            }
            let id = txn["id"].as_str().unwrap_or_default().to_owned();
            for (path, bytes) in &files {
                http.put(format!("{base}/api/v1/transactions/{id}/files/{path}"))
                    .body(bytes.clone())
                    .send()
                    .await?
                    .error_for_status()?;
            }
            http.post(format!("{base}/api/v1/transactions/{id}/commit"))
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }

    for cycle in 0..=FARM_CYCLES {
        let server = Server::start(&data, None, &["--gc-grace-seconds", "0"]);
        let landed: usize = rt.block_on(async {
            let mut n = 0;
            for farm in 0..3u64 {
                let list: Value = http
                    .get(server.url(&format!("/api/v1/repos/files/farm/f{farm}/@versions?limit=1000")))
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("json");
                n += list["versions"].as_array().map_or(0, Vec::len);
            }
            n
        });
        eprintln!("farm cycle {cycle}: {landed} of {} jobs landed so far", 3 * JOBS);
        let tasks: Vec<_> = (0..3u64)
            .map(|f| rt.spawn(run_jobs(http.clone(), server.base.clone(), f)))
            .collect();
        if cycle < FARM_CYCLES {
            std::thread::sleep(Duration::from_millis(150 + seed_of(&format!("farm{cycle}")) % 300));
            server.kill9();
            rt.block_on(async {
                for t in tasks {
                    let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
                }
            });
        } else {
            // The last round runs every job to completion (retrying past expired leases).
            rt.block_on(async {
                for t in tasks {
                    t.await.expect("join").expect("all jobs finally succeed");
                }
            });
            for farm in 0..3u64 {
                let name = format!("farm/f{farm}");
                let list: Value = rt.block_on(async {
                    http.get(server.url(&format!("/api/v1/repos/files/{name}/@versions?limit=1000")))
                        .send()
                        .await
                        .expect("list")
                        .json()
                        .await
                        .expect("json")
                });
                let versions = list["versions"].as_array().expect("versions").clone();
                let mut jobs_seen = BTreeSet::new();
                for v in &versions {
                    let version = v["version"].as_str().expect("version");
                    let m: Value = rt.block_on(async {
                        http.get(server.url(&format!("/api/v1/repos/files/{name}/@v/{version}")))
                            .send()
                            .await
                            .expect("manifest")
                            .json()
                            .await
                            .expect("json")
                    });
                    let job = m["metadata"]["job"].as_str().expect("job").to_owned();
                    let want: Vec<String> = expected_files(&name, &job)
                        .iter()
                        .map(|(_, b)| hex_sha256(b))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let got: Vec<String> = m["files"]
                        .as_array()
                        .expect("files")
                        .iter()
                        .map(|f| f["sha256"].as_str().unwrap_or_default().to_owned())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    assert_eq!(got, want, "{name}@{version} holds exactly job {job}'s files");
                    assert!(
                        jobs_seen.insert(job.clone()),
                        "job {job} created two versions of {name}"
                    );
                }
                assert_eq!(versions.len(), JOBS, "{name}: one version per job, no more, no fewer");
            }
        }
    }
}
