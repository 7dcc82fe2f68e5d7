//! A full disk: writes are refused with 507 and the server reports not-ready while it lasts,
//! nothing committed is lost, and writes come back by themselves once space is freed.
//! Runs on a small tmpfs this test mounts (it needs root, as CI has).

use std::path::{Path, PathBuf};
use std::process::Command;

use intact_store::StoreConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::{Server, json_of};

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop.
struct SmallDisk {
    dir: Option<tempfile::TempDir>,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = dir.path().to_owned();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir: Some(dir), mount }
    }

    fn take_dir(&mut self) -> tempfile::TempDir {
        self.dir.take().expect("dir")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Fills the file system holding `dir` with a filler file until writing fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_writes_come_back_once_space_is_freed() {
    let mut disk = SmallDisk::mount("8m");
    let root = disk.take_dir();
    let mount = disk.mount.clone();
    let s = Server::start_in(root, intact_server::Config::embedded_default(), StoreConfig::default()).await;
    let before = s
        .publish("kept", "1", &[("a.bin", b"committed before the disk filled")])
        .await;

    let filler = fill(&mount);
    // Every kind of write now fails for lack of space, and says so; none is a 500.
    let mut refused = Vec::new();
    for i in 0..20 {
        let (status, v) = s
            .create(json!({"name": format!("full/{i}"), "version": "1", "metadata": {"pad": "x".repeat(50_000)}}))
            .await;
        if status == StatusCode::CREATED {
            let id = v["id"].as_str().expect("id").to_owned();
            let (status, v) = s.put(&id, "big.bin", vec![7u8; 256 * 1024]).await;
            if status == StatusCode::CREATED {
                let got = s.commit(&id).await;
                refused.push(got);
            } else {
                refused.push((status, v));
            }
        } else {
            refused.push((status, v));
        }
    }
    for (status, v) in &refused {
        assert_ne!(
            *status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "a full disk is not an internal error: {v}"
        );
    }
    let full: Vec<_> = refused
        .iter()
        .filter(|(s, _)| *s == StatusCode::INSUFFICIENT_STORAGE)
        .collect();
    assert!(!full.is_empty(), "no write was refused as 507: {refused:?}");
    for (_, v) in &full {
        assert_eq!(v["error"], "insufficient_storage", "{v}");
        assert!(v["message"].as_str().is_some_and(|m| m.contains("space")), "{v}");
    }
    let ready = s.http.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while the disk is full"
    );
    // Reads still work.
    assert_eq!(s.get_json("/api/v1/repos/files/kept/@v/1").await.1, before);

    // Space comes back: so do writes and readiness, without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let ready = s.http.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK, "ready again once space is freed");
    let (status, v) = s.create(json!({"name": "after", "version": "1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let (status, v) = s.put(&id, "a.bin", b"after the disk was freed".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let (status, bytes) = s.get_bytes("/api/v1/repos/files/after/@v/1/a.bin").await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"after the disk was freed"[..])
    );
    let gc = json_of(
        s.http
            .post(s.url("/api/v1/admin/gc"))
            .json(&json!({"grace_seconds": 0}))
            .send()
            .await
            .expect("gc"),
    )
    .await;
    assert_eq!(gc.0, StatusCode::OK, "{}", gc.1);
    s.stop().await;
}
