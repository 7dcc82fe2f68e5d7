//! The `intact` CLI against a real server: publish a directory with metadata, list, get with
//! verification, idempotent re-publish, verify and gc.

use std::process::Command;

use crate::harness::{BIN, Server};

fn intact(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("INTACT_SERVER", &server.base)
        .output()
        .expect("run intact");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn publish_ls_get_verify_gc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let src = dir.path().join("render");
    std::fs::create_dir_all(src.join("frames")).expect("mkdir");
    std::fs::write(src.join("frames/0001.exr"), b"frame one").expect("write");
    std::fs::write(src.join("frames/0002.exr"), b"frame two").expect("write");
    let single = dir.path().join("notes.txt");
    std::fs::write(&single, b"lighting pass").expect("write");
    let (src_s, single_s) = (src.to_str().expect("utf8"), single.to_str().expect("utf8"));

    let (ok, out, err) = intact(
        &server,
        &[
            "publish",
            "files",
            "shots/010/comp",
            "auto",
            src_s,
            single_s,
            "--meta",
            "artist=kim",
            "--idempotency-key",
            "job-1",
        ],
    );
    assert!(ok, "publish failed: {out}{err}");
    assert!(out.contains("published files/shots/010/comp@1: 3 files"), "{out}");
    assert!(
        err.contains("uploaded frames/0001.exr"),
        "plain progress lines off a terminal: {err}"
    );

    // A retried job (same idempotency key) does not create version 2.
    let (ok, out, err) = intact(
        &server,
        &[
            "publish",
            "files",
            "shots/010/comp",
            "auto",
            src_s,
            single_s,
            "--meta",
            "artist=kim",
            "--idempotency-key",
            "job-1",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("already published"), "{out}");

    let (ok, out, _) = intact(&server, &["ls", "files"]);
    assert!(ok);
    assert_eq!(out.trim(), "shots/010/comp");
    let (ok, out, _) = intact(&server, &["ls", "files", "shots/010/comp"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("1\t"), "{out}");

    let dest = dir.path().join("out");
    let (ok, out, err) = intact(
        &server,
        &[
            "get",
            "files",
            "shots/010/comp",
            "1",
            "--out",
            dest.to_str().expect("utf8"),
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(dest.join("frames/0002.exr")).expect("read"), b"frame two");
    assert_eq!(std::fs::read(dest.join("notes.txt")).expect("read"), b"lighting pass");

    // A second get into the same place refuses, naming what is there, and changes nothing;
    // --force replaces.
    std::fs::write(dest.join("notes.txt"), b"edited locally").expect("write");
    let get_again = |force: bool| {
        let mut args = vec![
            "get",
            "files",
            "shots/010/comp",
            "1",
            "--out",
            dest.to_str().expect("utf8"),
        ];
        if force {
            args.push("--force");
        }
        intact(&server, &args)
    };
    let (ok, _, err) = get_again(false);
    assert!(!ok, "an existing file is not overwritten without --force");
    assert!(err.contains("already exist") && err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read(dest.join("notes.txt")).expect("read"), b"edited locally");
    let (ok, out, err) = get_again(true);
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(dest.join("notes.txt")).expect("read"), b"lighting pass");

    // `latest` is the version committed last.
    let latest_dir = dir.path().join("latest");
    let (ok, out, err) = intact(
        &server,
        &[
            "get",
            "files",
            "shots/010/comp",
            "latest",
            "--out",
            latest_dir.to_str().expect("utf8"),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("shots/010/comp@1:"), "{out}");
    assert_eq!(
        std::fs::read(latest_dir.join("notes.txt")).expect("read"),
        b"lighting pass"
    );

    // Listing the versions of a name the repo does not have is an error, saying so.
    let (ok, _, err) = intact(&server, &["ls", "files", "no/such/name"]);
    assert!(!ok);
    assert!(err.contains("no version of no/such/name"), "{err}");

    // The repos, one per line.
    let (ok, out, err) = intact(&server, &["repos"]);
    assert!(ok, "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("files\thosted\tgeneric")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("go\tgroup\tgo\tmembers go-private, go-public")),
        "{out}"
    );
    let (ok, out, _) = intact(&server, &["repos", "--json"]);
    assert!(ok);
    for line in out.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON line per repo");
    }

    // Re-publishing the same version (no key) with the same files and metadata: success,
    // nothing uploaded.
    let (ok, out, err) = intact(
        &server,
        &[
            "publish",
            "files",
            "shots/010/comp",
            "1",
            src_s,
            single_s,
            "--meta",
            "artist=kim",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("already published, identical"), "{out}");
    assert!(!err.contains("uploaded"), "nothing is uploaded again: {err}");

    // With different content it is refused, saying what differs, and nothing changes.
    std::fs::write(&single, b"changed").expect("write");
    let (ok, _, err) = intact(
        &server,
        &[
            "publish",
            "files",
            "shots/010/comp",
            "1",
            src_s,
            single_s,
            "--meta",
            "artist=kim",
        ],
    );
    assert!(!ok);
    assert!(err.contains("already published with different content"), "{err}");
    assert!(err.contains("changed: notes.txt"), "{err}");
    let (ok, _, err) = intact(&server, &["publish", "files", "shots/010/comp", "1", single_s]);
    assert!(!ok);
    assert!(err.contains("only in the existing version: frames/0001.exr"), "{err}");

    // Bad input is refused before anything is uploaded.
    let (ok, _, err) = intact(&server, &["publish", "files", "../escape", "1", single_s]);
    assert!(!ok);
    assert!(err.contains("invalid name"), "{err}");

    let (ok, out, _) = intact(&server, &["verify"]);
    assert!(ok, "{out}");
    assert!(out.contains("0 problems"), "{out}");
    let (ok, out, _) = intact(&server, &["gc", "--grace-seconds", "0"]);
    assert!(ok, "{out}");
    assert!(out.contains("\"blobs_deleted\""), "{out}");
}

#[test]
fn verify_and_gc_work_offline_on_a_data_dir_and_refuse_a_busy_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &[]);
    let f = dir.path().join("a.bin");
    std::fs::write(&f, b"offline").expect("write");
    let (ok, out, err) = intact(&server, &["publish", "files", "x", "1", f.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    // While the server owns the data dir, offline mode refuses.
    let (ok, _, err) = intact(&server, &["verify", "--data-dir", data.to_str().expect("utf8")]);
    assert!(!ok);
    assert!(err.contains("in use by another intact process"), "{err}");
    server.kill9();
    let out = Command::new(BIN)
        .args(["verify", "--data-dir", data.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("checked 1 blob ("));
    // A damaged blob: verify fails and names the version that needs repair.
    let digest = intact_core::Digest::of(b"offline").to_hex();
    let blob = data.join("blobs/sha256").join(&digest[..2]).join(&digest);
    std::fs::write(&blob, b"offlinE").expect("rot");
    let out = Command::new(BIN)
        .args(["verify", "--data-dir", data.to_str().expect("utf8")])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("hash mismatch") && text.contains("needed by files/x@1:a.bin"),
        "{text}"
    );
    std::fs::write(&blob, b"offline").expect("repair");
    let out = Command::new(BIN)
        .args(["gc", "--data-dir", data.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An idempotency key says "this is the same publish again": when the key already published a
/// version but the local files (or metadata) are not what it holds, the new content was never
/// published, and success would be a lie (a re-run CI job reusing its job id as the key,
/// after a fix). The CLI refuses, naming the key and what differs.
#[test]
fn an_idempotency_key_reused_for_other_content_is_not_reported_as_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let file = dir.path().join("build.bin");
    std::fs::write(&file, b"first build").expect("write");
    let file_s = file.to_str().expect("utf8");
    let args = ["publish", "files", "app", "auto", file_s, "--idempotency-key", "job-7"];
    let (ok, out, err) = intact(&server, &args);
    assert!(ok, "{out}{err}");
    // The very same publish again: fine, nothing new.
    let (ok, out, err) = intact(&server, &args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("already published"), "{out}");
    // Other bytes under the same key.
    std::fs::write(&file, b"second build, after a fix").expect("write");
    let (ok, out, err) = intact(&server, &args);
    assert!(
        !ok,
        "other content under a used key was reported as published: {out}{err}"
    );
    assert!(err.contains("job-7") && err.contains("changed: build.bin"), "{err}");
}

#[test]
fn config_check_names_every_problem_and_opens_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |text: &str| {
        let file = dir.path().join("intact.toml");
        std::fs::write(&file, text).expect("write");
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(&file)
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let data = dir.path().join("never-created");
    let (ok, out, err) = check(&format!(
        "data_dir = \"{}\"\n[catalog]\nurl = \"postgres://intact:secret@db/intact\"\n",
        data.display()
    ));
    assert!(ok, "{out}{err}");
    assert!(out.contains("valid") && out.contains("postgres://"), "{out}");
    assert!(!out.contains("secret"), "the password is never printed: {out}");
    assert!(!data.exists(), "checking opened nothing");

    // Three problems at once, each named.
    let (ok, _, err) = check(
        r#"
[store]
gc_page_size = 0

[[repo]]
name = "up"
kind = "proxy"

[[repo]]
name = "g"
kind = "group"
members = ["missing"]
"#,
    );
    assert!(!ok);
    assert!(err.contains("3 problems"), "{err}");
    for what in [
        "store.gc_page_size",
        "repo up: a proxy repo needs an upstream",
        "repo g: member missing is not declared",
    ] {
        assert!(err.contains(what), "{what} not named: {err}");
    }
    // Syntax: the line is named.
    let (ok, _, err) = check("[store\n");
    assert!(!ok);
    assert!(err.contains("line 1"), "{err}");
    // The server refuses the same file before opening anything, naming the same problems.
    let file = dir.path().join("intact.toml");
    std::fs::write(&file, "[[repo]]\nname = \"up\"\nkind = \"proxy\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an upstream"));
    assert!(!data.exists(), "a bad configuration opened nothing");
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN).args(["completions", shell]).output().expect("run");
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("publish") && script.contains("idempotency-key"),
            "{shell}: {script}"
        );
    }
}

/// The sample configurations in `deploy/` stay valid as the configuration evolves.
#[test]
fn the_deployment_samples_pass_config_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for sample in ["deploy/single/intact.toml", "deploy/systemd/intact.toml"] {
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(root.join(sample))
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn ready_says_whether_the_server_can_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let (ok, out, err) = intact(&server, &["ready"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "ready");
    let base = server.base.clone();
    server.kill9();
    let out = Command::new(BIN)
        .args(["ready", "--server", &base, "--timeout-seconds", "2"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "a dead server is not ready");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready"));
}
