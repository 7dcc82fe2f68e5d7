//! Power loss, simulated: the data dir lives on `intact-lossyfs`, a FUSE filesystem that
//! throws away, when the power is cut, every write not fsynced and every directory entry
//! (create, rename, unlink) whose directory was not fsynced. SIGKILL keeps the page cache; this
//! does not. SQLite (WAL, `synchronous=FULL`, mmap'd `-shm`) runs on it like any file.
//!
//! Needs FUSE (root and /dev/fuse). CI has both, and these tests fail, not skip, without it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use intact_lossyfs::LossyFs;
use serde_json::{Value, json};

use crate::harness::{Server, client, pattern, runtime, sized};
use crate::torture::content::{Sizes, sha256_hex};
use crate::torture::{Death, Plan, Rig, seed};

/// Mounts a fresh lossy filesystem at `<dir>/mnt`.
fn mount(dir: &Path) -> LossyFs {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mountpoint");
    LossyFs::mount(&mnt).unwrap_or_else(|e| {
        panic!(
            "cannot mount the lossy FUSE filesystem on {}: {e} (the power-loss suite needs /dev/fuse and root; CI has both)",
            mnt.display()
        )
    })
}

/// Everything the kernel would eventually write back on its own: fsync every file and
/// directory under `root` (a quiet minute before the power cut).
fn settle(root: &Path) {
    for entry in std::fs::read_dir(root).expect("read_dir").flatten() {
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            settle(&path);
        } else if let Ok(f) = File::open(&path) {
            f.sync_all().expect("fsync file");
        }
    }
    File::open(root).expect("open dir").sync_all().expect("fsync dir");
}

struct Single {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Single {
    fn new() -> Single {
        Single {
            rt: runtime(),
            http: client(),
        }
    }

    /// Publishes one file as `files/name@version`; panics unless acknowledged.
    fn publish(&self, server: &Server, name: &str, version: &str, bytes: &[u8]) {
        self.rt.block_on(async {
            let txn: Value = self
                .http
                .post(server.url("/api/v1/repos/files/transactions"))
                .json(&json!({"name": name, "version": version}))
                .send()
                .await
                .expect("begin")
                .json()
                .await
                .expect("json");
            let id = txn["id"].as_str().expect("txn id");
            let put = self
                .http
                .put(server.url(&format!("/api/v1/transactions/{id}/files/f.bin")))
                .body(bytes.to_vec())
                .send()
                .await
                .expect("put");
            assert!(put.status().is_success(), "put: {}", put.status());
            let commit = self
                .http
                .post(server.url(&format!("/api/v1/transactions/{id}/commit")))
                .send()
                .await
                .expect("commit");
            assert_eq!(commit.status(), 201, "commit of {name}@{version} is acknowledged");
        });
    }

    /// The bytes of `files/name@version/f.bin`, or the status and body of the failure.
    fn read(&self, server: &Server, name: &str, version: &str) -> Result<Vec<u8>, String> {
        self.rt.block_on(async {
            let resp = self
                .http
                .get(server.url(&format!("/api/v1/repos/files/{name}/@v/{version}/f.bin")))
                .send()
                .await
                .expect("read");
            let status = resp.status();
            let body = resp.bytes().await.expect("body").to_vec();
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("{status} {}", String::from_utf8_lossy(&body)))
            }
        })
    }
}

fn start(data: &Path, side: &Path) -> Server {
    Server::start_beside(data, side, None, &[])
}

/// A data dir created by the first start must itself survive a power cut, with the catalog
/// and blob directories in it: every directory the store creates is fsynced into its parent,
/// up to one that already existed, and so is the data dir after SQLite created its catalog.
#[test]
fn power_loss_right_after_the_first_start_keeps_an_acknowledged_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fs = mount(dir.path());
    let data: PathBuf = fs.mountpoint().join("var/intact");
    let side = dir.path().join("server");
    let one = Single::new();

    let server = start(&data, &side);
    let bytes = pattern(11, 70_000);
    one.publish(&server, "first/publish", "1", &bytes);
    server.kill9();
    let cut = fs.power_cut().expect("power cut");
    println!("power cut: {cut:?}");

    let server = start(&data, &side);
    assert_eq!(
        one.read(&server, "first/publish", "1").map(|b| sha256_hex(&b)),
        Ok(sha256_hex(&bytes)),
        "the acknowledged version survives the power cut"
    );
}

/// Hole 10, deterministic: another upload has renamed a blob into its shard directory but not
/// yet fsynced that directory when a publish of the same content finds the file there. The
/// publish must not commit before the blob's directory entry is durable, or a power cut
/// leaves the committed version naming a blob that is gone.
#[test]
fn power_loss_keeps_a_deduplicated_blob_whose_directory_entry_another_upload_left_unsynced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fs = mount(dir.path());
    let data = fs.mountpoint().join("data");
    let side = dir.path().join("server");
    let one = Single::new();

    let server = start(&data, &side);
    one.publish(&server, "before/anything", "1", b"a version so the catalog has content");
    // A long quiet moment: everything so far is on disk.
    settle(fs.mountpoint());

    // The other upload, stopped between its rename and its directory fsync: the blob's bytes
    // are durable (fsynced temp file), its name in the shard directory is not.
    let bytes = pattern(10, 50_000);
    let hex = sha256_hex(&bytes);
    let temp = data.join("tmp").join("other-upload");
    let mut f = File::create(&temp).expect("temp blob");
    f.write_all(&bytes).expect("write");
    f.sync_all().expect("fsync temp blob");
    drop(f);
    let target = data.join("blobs/sha256").join(&hex[..2]).join(&hex);
    std::fs::rename(&temp, &target).expect("rename into place");

    // Now a publish of the same content: the blob store finds the file already there.
    one.publish(&server, "dedup/blob", "1", &bytes);
    server.kill9();
    let cut = fs.power_cut().expect("power cut");
    println!("power cut: {cut:?}");

    let server = start(&data, &side);
    assert_eq!(
        one.read(&server, "dedup/blob", "1").map(|b| sha256_hex(&b)),
        Ok(hex),
        "a committed version's blob survives the power cut"
    );
    let verify: Value = one.rt.block_on(async {
        one.http
            .post(server.url("/api/v1/admin/verify"))
            .json(&json!({}))
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(verify["ok"], json!(true), "{verify}");
}

/// Power cuts at random instants under publishes (transactions and multipart, with and
/// without idempotency keys) and Go fetches (the torture driver, with the data dir on the
/// lossy filesystem): after every restart each acknowledged version is there,
/// byte for byte, and nothing partial is visible.
#[test]
fn power_loss_at_random_instants_keeps_every_acknowledged_version() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = mount(dir.path());
    let data = fs.mountpoint().join("data");
    let plan = Plan {
        suite: "power-loss",
        cycles: sized(40, 300),
        checkpoint_every: sized(20, 100),
        kill_after_ms: 30..900,
        sizes: Sizes {
            large: 64_000,
            small: 4_000,
        },
        publishers: 4,
        go_clients: 1,
        // One build staged per cycle: start-up rolls back what a cut left open in proxy repos
        // (the catalog is staging's journal), so a cut staging never holds its version.
        builds: 1,
    };
    let mut rig = Rig::new(plan, dir.path(), &data, Death::PowerCut(fs), seed());
    for cycle in 0..rig.plan.cycles {
        rig.cycle(cycle);
    }
    rig.finish(started);
}
