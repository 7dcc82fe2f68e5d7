//! Crash safety, for real: the real server killed with SIGKILL at random instants, many times
//! over one data dir, under every workload at once (the torture, driven by `crate::torture`),
//! and a render farm retrying its jobs with idempotency keys across kills.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::{Server, client, pattern, runtime, seed_of, sized};
use crate::torture::backend::Backend;
use crate::torture::content::Sizes;
use crate::torture::{Death, Plan, Rig, seed};

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

/// The crash torture (docs/reliability.md): SIGKILL at random instants while artifact API
/// publishes (transactions and multipart, with and without idempotency keys), Go proxy fetches
/// and staging run at once; after every restart each acknowledged version is there, byte for
/// byte, every visible version is whole, and at each checkpoint gc leaves exactly the
/// referenced blobs and no leftover file or catalog row.
#[test]
fn crash_torture_sigkill_under_publishes_go_fetches_and_staging() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Plan {
        suite: "crash-torture",
        cycles: sized(30, 1000),
        checkpoint_every: sized(10, 100),
        kill_after_ms: 30..1200,
        sizes: Sizes {
            large: 240_000,
            small: 16_000,
        },
        publishers: 4,
        go_clients: 2,
        builds: 2,
    };
    let mut rig = Rig::new(plan, dir.path(), &dir.path().join("data"), Death::Sigkill, seed());
    for cycle in 0..rig.plan.cycles {
        rig.cycle(cycle);
    }
    rig.finish(started);
}

/// The crash torture on the scale-out engines: the same workloads and checks, with the
/// catalog in PostgreSQL (a fresh database) and the blobs in a real S3 server (Garage). Here
/// start-up leaves open transactions alone (they might be a live replica's): a killed
/// server's Go fetches and stagings are taken over once their worker lease lapses.
#[test]
fn crash_torture_sigkill_on_postgres_and_s3() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Plan {
        suite: "crash-torture-postgres-s3",
        cycles: sized(12, 300),
        checkpoint_every: sized(6, 50),
        kill_after_ms: 30..1200,
        sizes: Sizes {
            large: 240_000,
            small: 16_000,
        },
        publishers: 4,
        go_clients: 2,
        builds: 2,
    };
    let mut rig = Rig::on(
        plan,
        dir.path(),
        &dir.path().join("data"),
        Death::Sigkill,
        seed(),
        |rt| Backend::postgres_and_s3(rt, "crash-torture"),
    );
    for cycle in 0..rig.plan.cycles {
        rig.cycle(cycle);
    }
    rig.finish(started);
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
