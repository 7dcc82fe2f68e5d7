//! Import by path (`POST /api/v1/transactions/{id}/import`): files the server reads inside
//! `[import] allowed_roots` staged without their bytes crossing the network. Nothing outside
//! the roots (symlinks and `..` resolved), no wrong hash, and a stored version never changes
//! because its source did: copies and clones are other inodes, a moved file has no other
//! name, a hardlinked one is immutable. Reflink needs a filesystem that clones: the test
//! makes a loop-mounted XFS when it may (root, mkfs.xfs), and says so when it cannot.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use intact_core::Digest;
use intact_server::Config;
use intact_server::config::ImportSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Server, assert_error, json_of, str_of};

/// The embedded default configuration importing from `roots`.
fn importing_from(roots: &[&Path]) -> Config {
    Config {
        import: ImportSettings {
            allowed_roots: roots.iter().map(|r| r.to_path_buf()).collect(),
        },
        ..Config::embedded_default()
    }
}

async fn import(s: &Server, txn: &str, body: Value) -> (StatusCode, Value) {
    let resp = s
        .http
        .post(s.url(&format!("/api/v1/transactions/{txn}/import")))
        .json(&body)
        .send()
        .await
        .expect("import");
    json_of(resp).await
}

/// Imports one file as `path` by `mode`; the answer.
async fn import_one(s: &Server, txn: &str, path: &str, source: &Path, mode: &str) -> (StatusCode, Value) {
    import(
        s,
        txn,
        json!({"files": [{"path": path, "source": source.to_str().expect("utf-8")}], "mode": mode}),
    )
    .await
}

/// Opens `name@version`, imports `source` as `f.bin` by `mode` (which must succeed), commits;
/// the mode the server used.
async fn import_and_commit(s: &Server, name: &str, source: &Path, mode: &str) -> String {
    let (id, _) = s.open(json!({"name": name, "version": "1"})).await;
    let (status, v) = import_one(s, &id, "f.bin", source, mode).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let used = str_of(&v["files"][0], "mode");
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    used
}

async fn read_back(s: &Server, name: &str) -> Vec<u8> {
    let (status, bytes) = s.get_bytes(&format!("/api/v1/repos/files/{name}/@v/1/f.bin")).await;
    assert_eq!(status, StatusCode::OK);
    bytes
}

/// Some bytes of `len`, different for each `seed`.
fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Clears the immutable flag a hardlink import set under its directories when dropped, so
/// that the temporary directories can be removed, whatever the test's outcome.
struct Unfreeze(Vec<PathBuf>);

impl Drop for Unfreeze {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-R")
                .arg("-i")
                .arg(dir)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn ino(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).expect("metadata");
    (m.dev(), m.ino())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_is_refused_while_no_root_is_allowed() {
    let s = Server::start().await;
    let (id, _) = s.open(json!({"name": "imp/off", "version": "1"})).await;
    let file = s.root.path().join("data").join("catalog.db");
    let got = import_one(&s, &id, "f.bin", &file, "copy").await;
    assert_error(&got, StatusCode::FORBIDDEN, "import_disabled", None);
    assert!(str_of(&got.1, "message").contains("allowed_roots"), "{}", got.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_roots_and_only_regular_files_are_imported() {
    let root = tempfile::tempdir().expect("root");
    let outside = tempfile::tempdir().expect("outside");
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"not for import").expect("secret");
    let inside = root.path().join("renders");
    std::fs::create_dir(&inside).expect("dir");
    std::fs::write(inside.join("ok.exr"), b"a frame").expect("file");
    std::os::unix::fs::symlink(&secret, inside.join("escape")).expect("symlink out");
    std::os::unix::fs::symlink(outside.path(), inside.join("door")).expect("dir symlink out");
    std::os::unix::fs::symlink(inside.join("ok.exr"), inside.join("alias")).expect("symlink in");
    let fifo = inside.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let s = Server::start_with(importing_from(&[root.path()])).await;
    let (id, _) = s.open(json!({"name": "imp/paths", "version": "1"})).await;

    let outside_name = outside.path().file_name().expect("name").to_str().expect("utf-8");
    let dotdot = format!("{}/renders/../../{outside_name}/secret", root.path().display());
    for source in [
        secret.display().to_string(),
        inside.join("escape").display().to_string(),
        inside.join("door/secret").display().to_string(),
        dotdot,
    ] {
        let got = import(&s, &id, json!({"files": [{"path": "x", "source": source}]})).await;
        assert_error(&got, StatusCode::FORBIDDEN, "import_forbidden", None);
        assert!(str_of(&got.1, "message").contains("outside"), "{source}: {}", got.1);
    }
    for (source, why) in [
        (inside.display().to_string(), "not a regular file"),
        (fifo.display().to_string(), "FIFO"),
        (inside.join("missing").display().to_string(), "no such file"),
        ("renders/ok.exr".to_owned(), "absolute"),
    ] {
        let got = import(&s, &id, json!({"files": [{"path": "x", "source": source}]})).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("files"));
        assert!(str_of(&got.1, "message").contains(why), "{source}: {}", got.1);
    }
    // Bad entries refuse the whole request before any file is touched.
    let ok = inside.join("ok.exr").display().to_string();
    for files in [
        json!([]),
        json!([{"path": "../x", "source": ok}]),
        json!([{"path": "a", "source": ok}, {"path": "a", "source": ok}]),
        json!([{"path": "a", "source": ok, "sha256": "xyz"}]),
        json!(vec![json!({"path": "a", "source": ok}); 10_001]),
    ] {
        let got = import(&s, &id, json!({"files": files})).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("files"));
    }
    let got = import(
        &s,
        &id,
        json!({"files": [{"path": "a", "source": ok}], "mode": "teleport"}),
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert!(s.txn(&id).await["files"].as_array().expect("files").is_empty());

    // A symlink that stays inside the roots is followed; the file is stored under its path.
    let got = import(
        &s,
        &id,
        json!({"files": [{"path": "alias.exr", "source": inside.join("alias")}], "mode": "copy"}),
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["files"][0]["sha256"], Digest::of(b"a frame").to_hex());
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/imp/paths/@v/1/alias.exr").await,
        (StatusCode::OK, b"a frame".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_files_are_never_sources_even_under_a_root() {
    // The allowed root holds the data dir: the catalog and stored blobs stay out of reach
    // (moving or freezing them would break the store).
    let root = tempfile::tempdir().expect("root");
    let config = importing_from(&[root.path()]);
    let store_config = config.store_config();
    let root_path = root.path().to_owned();
    let s = Server::start_in(root, config, store_config).await;
    let stored = s.publish("imp/own", "1", &[("a.txt", b"stored bytes")]).await;
    assert_eq!(stored["files"][0]["path"], "a.txt");
    let (id, _) = s.open(json!({"name": "imp/own", "version": "2"})).await;
    for source in [
        s.data.join("catalog.db"),
        s.blob_path(&Digest::of(b"stored bytes")),
        root_path.join("data").join("..").join("data").join("catalog.db"),
    ] {
        let got = import_one(&s, &id, "x", &source, "move").await;
        assert_error(&got, StatusCode::FORBIDDEN, "import_forbidden", None);
        assert!(str_of(&got.1, "message").contains("own files"), "{}", got.1);
    }
    assert!(s.data.join("catalog.db").exists());
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/imp/own/@v/1/a.txt").await,
        (StatusCode::OK, b"stored bytes".to_vec())
    );
    // Beside the data dir, under the same root: imported.
    let beside = root_path.join("beside.txt");
    std::fs::write(&beside, b"beside").expect("file");
    let (status, v) = import_one(&s, &id, "beside.txt", &beside, "copy").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sha256_stages_nothing_and_a_refused_move_puts_the_file_back() {
    let root = tempfile::tempdir().expect("root");
    let source = root.path().join("plate.exr");
    std::fs::write(&source, b"plate bytes").expect("file");
    let s = Server::start_with(importing_from(&[root.path()])).await;
    let _unfreeze = Unfreeze(vec![root.path().to_owned(), s.data.clone()]);
    let (id, _) = s.open(json!({"name": "imp/hash", "version": "1"})).await;
    let wrong = Digest::of(b"other bytes").to_hex();
    for mode in ["copy", "move", "auto"] {
        let got = import(
            &s,
            &id,
            json!({"files": [{"path": "p.exr", "source": source, "sha256": wrong}], "mode": mode}),
        )
        .await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("files"));
        let message = str_of(&got.1, "message");
        assert!(
            message.contains("plate.exr") && message.contains(&wrong),
            "{mode}: {message}"
        );
        assert!(s.txn(&id).await["files"].as_array().expect("files").is_empty());
        assert_eq!(
            std::fs::read(&source).expect("source still there"),
            b"plate bytes",
            "{mode}"
        );
    }
    // Nothing of them was left in the store: neither a blob nor a pending file.
    assert!(!s.blob_path(&Digest::of(b"plate bytes")).exists());
    assert_eq!(std::fs::read_dir(s.data.join("tmp")).expect("tmp").count(), 0);
    // The right one is taken.
    let right = Digest::of(b"plate bytes").to_hex();
    let got = import(
        &s,
        &id,
        json!({"files": [{"path": "p.exr", "source": source, "sha256": right}], "mode": "copy"}),
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(
        got.1,
        json!({"files": [{"path": "p.exr", "size": 11, "sha256": right, "mode": "copy"}]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_move_keep_the_stored_version_whatever_happens_to_the_source() {
    let root = tempfile::tempdir().expect("root");
    let s = Server::start_with(importing_from(&[root.path()])).await;

    // copy: another inode; overwriting the source in place changes nothing stored.
    let copied = root.path().join("copied.bin");
    std::fs::write(&copied, bytes(300_000, 1)).expect("file");
    assert_eq!(import_and_commit(&s, "imp/copy", &copied, "copy").await, "copy");
    let blob = s.blob_path(&Digest::of(&bytes(300_000, 1)));
    assert_ne!(ino(&blob), ino(&copied));
    std::fs::write(&copied, bytes(300_000, 2)).expect("overwrite in place");
    assert_eq!(read_back(&s, "imp/copy").await, bytes(300_000, 1));

    // move: the same inode, no data copied, and no name left outside the store.
    let moved = root.path().join("sub").join("moved.bin");
    std::fs::create_dir(root.path().join("sub")).expect("dir");
    std::fs::write(&moved, bytes(300_000, 3)).expect("file");
    let before = ino(&moved);
    assert_eq!(import_and_commit(&s, "imp/move", &moved, "move").await, "move");
    assert!(!moved.exists(), "a move leaves no source");
    let blob = s.blob_path(&Digest::of(&bytes(300_000, 3)));
    assert_eq!(ino(&blob), before, "the stored blob is the source's inode");
    assert_eq!(std::fs::metadata(&blob).expect("blob").nlink(), 1);
    assert_eq!(read_back(&s, "imp/move").await, bytes(300_000, 3));

    // A file with another name is not moved: that name could still change it.
    let linked = root.path().join("linked.bin");
    std::fs::write(&linked, bytes(1000, 4)).expect("file");
    std::fs::hard_link(&linked, root.path().join("other-name.bin")).expect("link");
    let (id, _) = s.open(json!({"name": "imp/move-linked", "version": "1"})).await;
    let got = import_one(&s, &id, "f.bin", &linked, "move").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("files"));
    assert!(str_of(&got.1, "message").contains("hard links"), "{}", got.1);
    assert_eq!(std::fs::read(&linked).expect("put back"), bytes(1000, 4));
    assert_eq!(std::fs::metadata(&linked).expect("source").nlink(), 2);

    // reflink on a filesystem that cannot clone (ext4, tmpfs): refused naming the mode.
    let got = import_one(&s, &id, "f.bin", &linked, "reflink").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("files"));
    assert!(str_of(&got.1, "message").contains("reflink"), "{}", got.1);
}

/// Whether this filesystem can clone files (`cp --reflink=always`).
fn clones(dir: &Path) -> bool {
    let a = dir.join("clone-probe-a");
    let b = dir.join("clone-probe-b");
    let _ = std::fs::write(&a, b"probe");
    let ok = std::process::Command::new("cp")
        .arg("--reflink=always")
        .arg(&a)
        .arg(&b)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardlink_makes_the_shared_inode_immutable_or_is_refused() {
    let root = tempfile::tempdir().expect("root");
    let s = Server::start_with(importing_from(&[root.path()])).await;
    let _unfreeze = Unfreeze(vec![root.path().to_owned(), s.data.clone()]);
    let source = root.path().join("frame.exr");
    std::fs::write(&source, bytes(200_000, 5)).expect("file");
    let before = ino(&source);
    let (id, _) = s.open(json!({"name": "imp/hardlink", "version": "1"})).await;
    let (status, v) = import_one(&s, &id, "f.bin", &source, "hardlink").await;
    if status != StatusCode::CREATED {
        // Where the immutable flag cannot be set, a hardlink is refused, naming why, and
        // auto copies instead.
        assert_error(
            &(status, v.clone()),
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("files"),
        );
        assert!(str_of(&v, "message").contains("immutable"), "{v}");
        eprintln!("hardlink refused here (no immutable flag): {v}");
        let (status, v) = import_one(&s, &id, "f.bin", &source, "auto").await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert!(
            ["copy", "reflink"].contains(&str_of(&v["files"][0], "mode").as_str()),
            "{v}"
        );
        return;
    }
    let blob = s.blob_path(&Digest::of(&bytes(200_000, 5)));
    assert_eq!(ino(&blob), before, "the stored blob shares the source's inode");
    // An in-place overwrite of the source is refused: the inode is immutable.
    let overwrite = std::fs::OpenOptions::new().write(true).open(&source);
    assert!(overwrite.is_err(), "the hardlinked source could be opened for writing");
    assert!(
        std::fs::remove_file(&source).is_err(),
        "the hardlinked source could be deleted"
    );
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(read_back(&s, "imp/hardlink").await, bytes(200_000, 5));
    // Imported again unchanged (the next version of a sequence): the frozen inode takes no
    // new link, and needs none, its bytes being stored.
    let (id, _) = s.open(json!({"name": "imp/hardlink", "version": "2"})).await;
    let (status, v) = import_one(&s, &id, "f.bin", &source, "hardlink").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(str_of(&v["files"][0], "mode"), "hardlink");
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");

    // auto on a filesystem that cannot clone copies: it never freezes the caller's file
    // unasked, which stays writable and free to change without reaching the store.
    let other = root.path().join("other.exr");
    std::fs::write(&other, bytes(1000, 6)).expect("file");
    if !clones(root.path()) {
        assert_eq!(import_and_commit(&s, "imp/auto", &other, "auto").await, "copy");
        std::fs::write(&other, b"changed").expect("the source stays writable");
        assert_eq!(read_back(&s, "imp/auto").await, bytes(1000, 6));
    }

    // A rolled-back import gives the blob up: the store deletes it (clearing the flag first),
    // and the source is the caller's again, writable.
    let third = root.path().join("third.exr");
    std::fs::write(&third, bytes(1000, 7)).expect("file");
    let (id, _) = s.open(json!({"name": "imp/rolled-back", "version": "1"})).await;
    let (status, v) = import_one(&s, &id, "f.bin", &third, "hardlink").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert!(std::fs::OpenOptions::new().write(true).open(&third).is_err());
    assert_eq!(s.abort(&id).await, StatusCode::NO_CONTENT);
    assert!(!s.blob_path(&Digest::of(&bytes(1000, 7))).exists(), "reclaimed");
    std::fs::write(&third, b"mine again").expect("the source is writable again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_stores_that_are_not_files_copy_and_refuse_the_other_modes() {
    let root = tempfile::tempdir().expect("root");
    let source = root.path().join("frame.exr");
    std::fs::write(&source, bytes(100_000, 8)).expect("file");
    let blobs = Arc::new(intact_store::MemoryBlobStore::default());
    let s = Server::start_on_blobs_with(importing_from(&[root.path()]), blobs).await;
    let (id, _) = s.open(json!({"name": "imp/memory", "version": "1"})).await;
    for mode in ["reflink", "move", "hardlink"] {
        let got = import_one(&s, &id, "f.bin", &source, mode).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("mode"));
        let message = str_of(&got.1, "message");
        assert!(message.contains(mode) && message.contains("memory"), "{message}");
    }
    assert!(source.exists());
    let (status, v) = import_one(&s, &id, "f.bin", &source, "auto").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(str_of(&v["files"][0], "mode"), "copy");
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    std::fs::write(&source, b"changed").expect("overwrite");
    assert_eq!(read_back(&s, "imp/memory").await, bytes(100_000, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blobs_are_imported_by_copy() {
    let root = tempfile::tempdir().expect("root");
    let source = root.path().join("frame.exr");
    std::fs::write(&source, bytes(9 << 20, 9)).expect("file");
    let blobs = Arc::new(
        intact_store::S3BlobStore::open(&crate::s3::garage_settings("import-by-path").await)
            .await
            .expect("open S3 blob store"),
    );
    let s = Server::start_on_blobs_with(importing_from(&[root.path()]), blobs).await;
    let (id, _) = s.open(json!({"name": "imp/s3", "version": "1"})).await;
    let got = import_one(&s, &id, "f.bin", &source, "move").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("mode"));
    assert!(str_of(&got.1, "message").contains("S3"), "{}", got.1);
    let (status, v) = import_one(&s, &id, "f.bin", &source, "copy").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(read_back(&s, "imp/s3").await, bytes(9 << 20, 9));
}

/// A new XFS filesystem (reflink on) loop-mounted for one test, unmounted when dropped.
struct LoopXfs {
    dir: tempfile::TempDir,
    mount: PathBuf,
}

impl LoopXfs {
    /// Why not, when it cannot be made here.
    fn make() -> Result<Self, String> {
        let run = |cmd: &mut std::process::Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        if !rustix::process::geteuid().is_root() {
            return Err("mounting a loop device needs root".to_owned());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("xfs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(400 << 20))
            .map_err(|e| e.to_string())?;
        run(std::process::Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image))?;
        run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount))?;
        Ok(Self { dir, mount })
    }

    fn used_bytes(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.mount).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for LoopXfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = &self.dir;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflink_clones_without_copying_and_the_clone_never_changes() {
    let xfs = match LoopXfs::make() {
        Ok(xfs) => xfs,
        // In CI the machine can make one (root, loop devices, xfsprogs from scripts/test): a
        // failure there is a failure, never a silent skip.
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("the reflink test needs a clone-capable filesystem (an XFS on a loop device): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED reflink test: no clone-capable filesystem could be made here ({why})");
            return;
        }
    };
    let roots = tempfile::tempdir_in(&xfs.mount).expect("roots");
    let config = importing_from(&[roots.path()]);
    let store_config = config.store_config();
    let s = Server::start_in(
        tempfile::tempdir_in(&xfs.mount).expect("server root"),
        config,
        store_config,
    )
    .await;
    let source = roots.path().join("plate.exr");
    let big = bytes(64 << 20, 10);
    std::fs::write(&source, &big).expect("file");
    let file = std::fs::File::open(&source).expect("open");
    file.sync_all().expect("sync");

    let used_before = xfs.used_bytes();
    assert_eq!(
        import_and_commit(&s, "imp/reflink", &source, "reflink").await,
        "reflink"
    );
    let used_after = xfs.used_bytes();
    eprintln!(
        "reflink import of 64 MiB: {} bytes more in use on the filesystem",
        used_after.saturating_sub(used_before)
    );
    // 64 MiB imported; a copy would use as much again, a clone shares the blocks.
    assert!(
        used_after.saturating_sub(used_before) < 8 << 20,
        "the import used {} bytes of disk",
        used_after.saturating_sub(used_before)
    );
    let blob = s.blob_path(&Digest::of(&big));
    assert_ne!(ino(&blob), ino(&source), "a clone is an inode of its own");
    // The source overwritten in place: the stored clone keeps its bytes.
    let mut changed = big.clone();
    changed[..1024].fill(0xee);
    std::fs::write(&source, &changed).expect("overwrite in place");
    assert_eq!(read_back(&s, "imp/reflink").await, big);

    // auto clones where it can.
    let other = roots.path().join("other.exr");
    std::fs::write(&other, bytes(1 << 20, 11)).expect("file");
    let (id, _) = s.open(json!({"name": "imp/reflink-auto", "version": "1"})).await;
    let (status, v) = import_one(&s, &id, "f.bin", &other, "auto").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(str_of(&v["files"][0], "mode"), "reflink");
    drop(s);
}

/// Importing is publishing: a token that may only read the transaction's repo is refused
/// before any file is looked at, and so is a caller without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_needs_publish_rights_on_the_repo() {
    let root = tempfile::tempdir().expect("root");
    let source = root.path().join("frame.exr");
    std::fs::write(&source, b"frame").expect("file");
    let s = Server::start_with(importing_from(&[root.path()])).await;
    let token = |name: &str, scope: &str, admin: Option<String>| {
        let (name, scope) = (name.to_owned(), scope.to_owned());
        let s = &s;
        async move {
            let mut req = s
                .http
                .post(s.url("/api/v1/tokens"))
                .json(&json!({"name": name, "scopes": [scope]}));
            if let Some(admin) = admin {
                req = req.bearer_auth(admin);
            }
            let resp = req.send().await.expect("token");
            let (status, v) = json_of(resp).await;
            assert_eq!(status, StatusCode::CREATED, "{v}");
            str_of(&v, "secret")
        }
    };
    // The first token needs none; the others are made with it.
    let admin = token("admin", "*:admin", None).await;
    let publisher = token("publisher", "files:publish", Some(admin.clone())).await;
    let reader = token("reader", "files:read", Some(admin)).await;
    let resp = s
        .http
        .post(s.url("/api/v1/repos/files/transactions"))
        .bearer_auth(&publisher)
        .json(&json!({"name": "imp/auth", "version": "1"}))
        .send()
        .await
        .expect("open");
    let (status, txn) = json_of(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{txn}");
    let id = str_of(&txn, "id");
    let body = json!({"files": [{"path": "f.exr", "source": source}], "mode": "copy"});
    let import_as = |who: Option<&str>| {
        let mut req = s
            .http
            .post(s.url(&format!("/api/v1/transactions/{id}/import")))
            .json(&body);
        if let Some(t) = who {
            req = req.bearer_auth(t);
        }
        async move { json_of(req.send().await.expect("import")).await }
    };
    assert_eq!(import_as(None).await.0, StatusCode::UNAUTHORIZED);
    let (status, v) = import_as(Some(&reader)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "forbidden", "{v}");
    let (status, v) = import_as(Some(&publisher)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

/// The kernel's pseudo filesystems are never sources, even under an allowed root: reading
/// `/proc/self/environ` would publish the server's environment (S3 keys and all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_pseudo_filesystems_are_never_sources() {
    let s = Server::start_with(importing_from(&[Path::new("/proc"), Path::new("/sys")])).await;
    let (id, _) = s.open(json!({"name": "imp/proc", "version": "1"})).await;
    for source in [
        "/proc/self/environ",
        "/proc/version",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ] {
        if !Path::new(source).exists() {
            continue;
        }
        let got = import(
            &s,
            &id,
            json!({"files": [{"path": "x", "source": source}], "mode": "copy"}),
        )
        .await;
        assert_error(&got, StatusCode::FORBIDDEN, "import_forbidden", None);
        assert!(str_of(&got.1, "message").contains("pseudo filesystem"), "{}", got.1);
    }
    assert_eq!(s.txn(&id).await["files"], json!([]), "nothing staged");
}
