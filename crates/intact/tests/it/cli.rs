//! The `intact` CLI against a real server: publish a directory with metadata, list, get with
//! verification, idempotent re-publish, verify and gc.

use std::process::Command;

use crate::harness::{self, BIN, Server};

fn intact(server: &Server, args: &[&str]) -> (bool, String, String) {
    harness::cli(&server.base, None, args, &[])
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
    assert!(out.contains("deleted 0 unreferenced blobs"), "{out}");
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

/// Stdout of a `--json` run: exactly one JSON document and nothing else.
fn one_document(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {out}"))
}

/// Human output is text, not JSON.
fn assert_text(out: &str) {
    assert!(!out.trim().is_empty(), "no output");
    assert!(
        serde_json::from_str::<serde_json::Value>(out).is_err() && !out.trim_start().starts_with('{'),
        "human output should not be JSON: {out}"
    );
}

/// `--json` on every command that reports a result: stdout is one JSON document with the
/// result's fields; without it the same commands print text.
#[test]
fn every_command_prints_one_json_document_with_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"alpha").expect("write");
    std::fs::write(src.join("sub/b.txt"), b"beta!").expect("write");
    let src_s = src.to_str().expect("utf8");

    // publish: the committed manifest, and whether this publish created it.
    let (ok, out, err) = intact(
        &server,
        &["publish", "files", "app", "auto", src_s, "--meta", "by=ci", "--json"],
    );
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(v["created"], true, "{v}");
    let m = &v["manifest"];
    assert_eq!(
        (m["repo"].as_str(), m["name"].as_str(), m["version"].as_str()),
        (Some("files"), Some("app"), Some("1")),
        "{v}"
    );
    assert_eq!(m["metadata"]["by"], "ci", "{v}");
    let files = m["files"].as_array().expect("files");
    assert_eq!(files.len(), 2, "{v}");
    assert_eq!(files[0]["path"], "a.txt");
    assert_eq!(files[0]["size"], 5);
    assert_eq!(files[0]["sha256"], intact_core::Digest::of(b"alpha").to_hex());
    // Publishing the same content again: not created, the same manifest.
    let (ok, out, err) = intact(
        &server,
        &["publish", "files", "app", "1", src_s, "--meta", "by=ci", "--json"],
    );
    assert!(ok, "{out}{err}");
    let again = one_document(&out);
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["manifest"], *m);
    // And through an idempotency key.
    let keyed = [
        "publish",
        "files",
        "keyed",
        "auto",
        src_s,
        "--idempotency-key",
        "k1",
        "--json",
    ];
    let (ok, out, err) = intact(&server, &keyed);
    assert!(ok, "{out}{err}");
    assert_eq!(one_document(&out)["created"], true, "{out}");
    let (ok, out, err) = intact(&server, &keyed);
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(
        (v["created"].as_bool(), v["manifest"]["version"].as_str()),
        (Some(false), Some("1")),
        "{v}"
    );

    // get: each file with its size, sha256 and where it was written.
    let dest = dir.path().join("out");
    let dest_s = dest.to_str().expect("utf8");
    let (ok, out, err) = intact(&server, &["get", "files", "app", "latest", "--out", dest_s, "--json"]);
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(
        (v["repo"].as_str(), v["name"].as_str(), v["version"].as_str()),
        (Some("files"), Some("app"), Some("1")),
        "{v}"
    );
    assert_eq!(v["metadata"]["by"], "ci", "{v}");
    let files = v["files"].as_array().expect("files");
    assert_eq!(files.len(), 2, "{v}");
    for f in files {
        let local = std::path::Path::new(f["dest"].as_str().expect("dest"));
        let bytes = std::fs::read(local).expect("the file is where dest says");
        assert_eq!(f["size"], bytes.len() as u64, "{f}");
        assert_eq!(f["sha256"], intact_core::Digest::of(&bytes).to_hex(), "{f}");
    }
    assert_eq!(files[1]["path"], "sub/b.txt");
    let (ok, out, err) = intact(&server, &["get", "files", "app", "1", "--out", dest_s, "--force"]);
    assert!(ok, "{out}{err}");
    assert_text(&out);

    // verify: the report, with ok.
    let (ok, out, err) = intact(&server, &["verify", "--json"]);
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["blobs_checked"].as_u64() >= Some(2), "{v}");
    assert!(
        v["bytes_checked"].is_u64() && v["problems"].as_array().is_some_and(Vec::is_empty),
        "{v}"
    );

    // gc: text by default (counts in words), the report with --json.
    let (ok, out, err) = intact(&server, &["gc", "--grace-seconds", "0"]);
    assert!(ok, "{out}{err}");
    assert_text(&out);
    assert!(out.contains("deleted 0 unreferenced blobs (0 bytes)"), "{out}");
    assert!(out.contains("expired 0 overdue transactions"), "{out}");
    let (ok, out, err) = intact(&server, &["gc", "--grace-seconds", "0", "--json"]);
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    for key in [
        "blobs_deleted",
        "bytes_deleted",
        "expired_transactions",
        "orphan_blobs_deleted",
    ] {
        assert!(v[key].is_u64(), "{key}: {v}");
    }
    let (ok, out, err) = intact(&server, &["gc", "--status", "--json"]);
    assert!(ok, "{out}{err}");
    assert!(one_document(&out)["running"].is_boolean(), "{out}");
    // The sweeper's status as text: counts in words, no "1 blobs" or "time(s)".
    let (ok, out, err) = intact(&server, &["gc", "--status"]);
    assert!(ok, "{out}{err}");
    assert_text(&out);
    assert!(out.contains("running: ") && out.contains("last pass: "), "{out}");
    assert!(!out.contains("(s)"), "{out}");

    // ready.
    let (ok, out, err) = intact(&server, &["ready", "--json"]);
    assert!(ok, "{out}{err}");
    assert_eq!(one_document(&out), serde_json::json!({"ready": true}));

    // hooks create and delete (list already prints JSON lines).
    let (ok, out, err) = intact(
        &server,
        &[
            "hooks",
            "create",
            "ci",
            "--repo",
            "files",
            "--url",
            "http://127.0.0.1:9/hook",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(
        (v["name"].as_str(), v["repo"].as_str()),
        (Some("ci"), Some("files")),
        "{v}"
    );
    assert!(v["secret"].as_str().is_some_and(|s| s.len() >= 16), "{v}");
    let (ok, out, err) = intact(&server, &["hooks", "delete", "ci", "--json"]);
    assert!(ok, "{out}{err}");
    assert_eq!(one_document(&out), serde_json::json!({"name": "ci", "deleted": true}));

    // go publish: the server's answer, and the go.sum lines.
    let module = "example.com/jsonmod";
    let go_src = dir.path().join("gomod");
    std::fs::create_dir_all(&go_src).expect("mkdir");
    let go_mod = format!("module {module}\n\ngo 1.19\n");
    std::fs::write(go_src.join("go.mod"), &go_mod).expect("write");
    std::fs::write(go_src.join("m.go"), "package jsonmod\n").expect("write");
    let go_src_s = go_src.to_str().expect("utf8");
    let (ok, out, err) = intact(&server, &["go", "publish", go_src_s, "--version", "v1.0.0", "--json"]);
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(
        (v["module"].as_str(), v["version"].as_str()),
        (Some(module), Some("v1.0.0")),
        "{v}"
    );
    assert_eq!(v["created"], true, "{v}");
    let h1 = v["h1"].as_str().expect("h1");
    assert_eq!(
        v["go_sum"],
        serde_json::json!([
            format!("{module} v1.0.0 {h1}"),
            format!(
                "{module} v1.0.0/go.mod {}",
                intact_go::dirhash::hash_go_mod(go_mod.as_bytes())
            ),
        ]),
        "{v}"
    );
    let (ok, out, err) = intact(&server, &["go", "publish", go_src_s, "--version", "v1.0.0"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!("{module} v1.0.0 {h1}"),
        "without --json: the go.sum line"
    );

    // Errors: the message on stderr, nothing on stdout.
    let (ok, out, err) = intact(&server, &["get", "files", "app", "9", "--out", dest_s, "--json"]);
    assert!(!ok);
    assert!(out.is_empty(), "stdout stays empty on an error: {out}");
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn token_commands_print_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let (ok, out, err) = intact(
        &server,
        &[
            "token",
            "create",
            "root",
            "--scope",
            "*:admin",
            "--expires",
            "1h",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(v["name"], "root", "{v}");
    assert_eq!(v["scopes"], serde_json::json!(["*:admin"]), "{v}");
    assert!(v["created_at"].is_string() && v["expires_at"].is_string(), "{v}");
    let secret = v["secret"].as_str().expect("secret").to_owned();
    let with_token = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("INTACT_SERVER", &server.base)
            .env("INTACT_TOKEN", &secret)
            .output()
            .expect("run intact");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = with_token(&["token", "create", "ci", "--scope", "files:publish", "--json"]);
    assert!(one_document(&out)["secret"].is_string(), "{out}");
    // A listing: one JSON object per token, never a secret.
    let out = with_token(&["token", "list", "--json"]);
    let names: Vec<String> = out
        .lines()
        .map(|l| {
            let t: serde_json::Value = serde_json::from_str(l).expect("a JSON line per token");
            assert!(t.get("secret").is_none(), "{t}");
            t["name"].as_str().expect("name").to_owned()
        })
        .collect();
    assert_eq!(names, ["ci", "root"], "{out}");
    let out = with_token(&["token", "list"]);
    assert_text(&out);
    let out = with_token(&["token", "revoke", "ci", "--json"]);
    let v = one_document(&out);
    assert_eq!(v["name"], "ci", "{v}");
    assert!(v["revoked_at"].is_string(), "{v}");
}

#[test]
fn stage_prints_its_final_result_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = dir.path().join("up");
    std::fs::create_dir_all(up.join("board/b1")).expect("mkdir");
    std::fs::write(up.join("board/b1/image.bin"), b"the image").expect("write");
    std::fs::write(up.join("board/b1/extra.bin"), b"extra bytes").expect("write");
    let config = format!(
        "[[repo]]\nname = \"builds\"\nkind = \"proxy\"\nformat = \"generic\"\nupstream = \"file://{}\"\n\
         [repo.artifacts]\nimage = {{ files = [\"image.bin\"] }}\nextra = {{ files = [\"extra.bin\"] }}\n",
        up.display()
    );
    let server = Server::start(&dir.path().join("data"), Some(&config), &[]);
    let (ok, out, err) = intact(
        &server,
        &[
            "stage",
            "builds",
            "board/b1",
            "image",
            "--background",
            "extra",
            "--wait",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(v["ok"], true, "{v}");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(
        (items[0]["artifact"].as_str(), items[0]["state"].as_str()),
        (Some("image"), Some("staged")),
        "{v}"
    );
    assert_eq!(items[0]["size"], 9, "{v}");
    // With --wait, the background job's final state.
    let background = v["background"].as_array().expect("background");
    assert_eq!(background.len(), 1, "{v}");
    assert_eq!(
        (background[0]["artifact"].as_str(), background[0]["state"].as_str()),
        (Some("extra"), Some("staged")),
        "{v}"
    );
    // Again, as text: already staged.
    let (ok, out, err) = intact(&server, &["stage", "builds", "board/b1", "image"]);
    assert!(ok, "{out}{err}");
    assert_text(&out);
    assert!(out.contains("staged builds/board/b1@image: 1 file, 9 bytes"), "{out}");
}

#[test]
fn config_check_and_ready_print_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("intact.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).expect("write");
        let out = Command::new(BIN)
            .args(["config", "check", "--json"])
            .arg(&file)
            .output()
            .expect("run");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = check("listen = \"127.0.0.1:7444\"\n");
    assert!(ok, "{out}");
    let v = one_document(&out);
    assert_eq!(
        (v["ok"].as_bool(), v["listen"].as_str(), v["tls"].as_bool()),
        (Some(true), Some("127.0.0.1:7444"), Some(false)),
        "{v}"
    );
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert!(v["repos"].as_array().is_some_and(|r| !r.is_empty()), "{v}");
    let (ok, out) = check("[store]\ngc_page_size = 0\n\n[[repo]]\nname = \"up\"\nkind = \"proxy\"\n");
    assert!(!ok, "{out}");
    let v = one_document(&out);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(2), "{v}");
    let (ok, out) = check("[store\n");
    assert!(!ok);
    let v = one_document(&out);
    assert!(v["problems"][0].as_str().is_some_and(|p| p.contains("line 1")), "{v}");

    // A server that is not there: not ready, with why, exit status 1.
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let base = server.base.clone();
    server.kill9();
    let out = Command::new(BIN)
        .args(["ready", "--json", "--server", &base, "--timeout-seconds", "2"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let v = one_document(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["ready"], false, "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| r.contains(&base)), "{v}");
}

/// `intact migrate`: counts in words by default, one JSON document (`copy`, `check`, `ok`)
/// with --json.
#[test]
fn migrate_prints_text_or_one_json_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &[]);
    let file = dir.path().join("a.bin");
    std::fs::write(&file, b"to migrate").expect("write");
    let (ok, out, err) = intact(&server, &["publish", "files", "m", "1", file.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    server.kill9();
    let db = crate::harness::runtime().block_on(intact_testkit::TestDatabase::create());
    let garage = intact_testkit::shared_garage();
    let blobs_url = format!("s3://{}/{}", garage.bucket, garage.prefix("cli-migrate"));
    let migrate = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "migrate",
                "--data-dir",
                data.to_str().expect("utf8"),
                "--to-catalog",
                &db.url,
            ])
            .args(["--to-blobs", &blobs_url, "--to-blobs-endpoint", &garage.endpoint])
            .args(["--to-blobs-region", &garage.region])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", &garage.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &garage.secret_access_key)
            .output()
            .expect("run intact migrate");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let v = one_document(&migrate(&["--json"]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["copy"]["versions_copied"], 1, "{v}");
    assert_eq!(v["copy"]["bytes_copied"], 10, "{v}");
    assert_eq!(v["check"]["versions_checked"], 1, "{v}");
    let out = migrate(&[]);
    assert_text(&out);
    assert!(
        out.contains("copied 0 versions (1 already there)") && out.contains("checked 1 version and 1 blob"),
        "{out}"
    );
    let v = one_document(&migrate(&["--json", "--no-verify"]));
    assert!(v["check"].is_null(), "{v}");
}

/// A farm re-publishing a sequence with a few frames changed sends only those frames: the
/// rest are added by the digest of bytes the server already holds.
#[test]
fn republishing_a_sequence_uploads_only_the_changed_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let seq = dir.path().join("seq");
    std::fs::create_dir_all(&seq).expect("mkdir");
    let frames: u64 = 200;
    // Distinct content per seed (`pattern` ignores a seed's lowest bit).
    let frame = |seed: u64| harness::pattern(2 * seed, 4096);
    for i in 0..frames {
        std::fs::write(seq.join(format!("f{i:04}.exr")), frame(i)).expect("write");
    }
    let seq_s = seq.to_str().expect("utf8");
    let publish = |version: &str| {
        let (ok, out, err) = intact(&server, &["publish", "files", "seq/plate", version, seq_s, "--json"]);
        assert!(ok, "publish {version}: {out}{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
    };
    let first = publish("1");
    assert_eq!(first["uploaded"]["files"], frames, "{first}");
    assert_eq!(first["already_stored"]["files"], 0, "{first}");

    // Eleven frames changed: ten with new bytes, and f0199 with the same new bytes as f0000.
    for i in (0..frames).step_by(20) {
        std::fs::write(seq.join(format!("f{i:04}.exr")), frame(10_000 + i)).expect("write");
    }
    std::fs::write(seq.join("f0199.exr"), frame(10_000)).expect("write");
    let second = publish("2");
    assert_eq!(second["created"], true, "{second}");
    // The same new bytes twice: uploaded once, then added by digest.
    assert_eq!(second["uploaded"]["files"], 10, "{second}");
    assert_eq!(second["uploaded"]["bytes"], 10 * 4096, "{second}");
    assert_eq!(second["already_stored"]["files"], frames - 10, "{second}");
    let dest = dir.path().join("out");
    let (ok, out, err) = intact(
        &server,
        &["get", "files", "seq/plate", "2", "--out", dest.to_str().expect("utf8")],
    );
    assert!(ok, "{out}{err}");
    for (i, seed) in [(0, 10_000), (199, 10_000), (20, 10_020), (1, 1), (198, 198)] {
        let got = std::fs::read(dest.join(format!("f{i:04}.exr"))).expect("read");
        assert_eq!(got, frame(seed), "frame {i}");
    }
    // The text output says what was sent.
    std::fs::write(seq.join("f0001.exr"), b"one more change").expect("write");
    let (ok, out, err) = intact(&server, &["publish", "files", "seq/plate", "3", seq_s]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("(15 bytes uploaded, 199 files already stored)"), "{out}");
}

/// `intact publish --from`: a version by editing another sends only the frames whose bytes
/// changed and drops frames no longer given (kept with --keep-missing); a re-run of the same
/// job (same key) is the same version; `intact tag` moves `hero` only from where it was
/// expected, and `intact get --tag` downloads what it points at.
#[test]
fn publishing_by_edit_sends_only_changes_and_tags_move_by_compare_and_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let seq = dir.path().join("seq");
    std::fs::create_dir_all(&seq).expect("mkdir");
    let frames: u64 = 200;
    let frame = |seed: u64| harness::pattern(2 * seed, 4096);
    for i in 0..frames {
        std::fs::write(seq.join(format!("f{i:04}.exr")), frame(i)).expect("write");
    }
    let seq_s = seq.to_str().expect("utf8");
    let run = |args: &[&str]| {
        let (ok, out, err) = intact(&server, args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    };
    let json = |out: String| serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
    run(&["publish", "files", "seq/plate", "auto", seq_s, "--meta", "shot=010"]);

    // Eleven frames re-rendered, one frame gone.
    for i in (0..frames).step_by(19) {
        std::fs::write(seq.join(format!("f{i:04}.exr")), frame(10_000 + i)).expect("write");
    }
    std::fs::remove_file(seq.join("f0199.exr")).expect("rm");
    let edit = json(run(&[
        "publish",
        "files",
        "seq/plate",
        "auto",
        seq_s,
        "--from",
        "1",
        "--idempotency-key",
        "job-77",
        "--json",
    ]));
    assert_eq!(edit["manifest"]["version"], "2", "{edit}");
    assert_eq!(edit["uploaded"]["files"], 11, "{edit}");
    assert_eq!(edit["uploaded"]["bytes"], 11 * 4096, "{edit}");
    assert_eq!(
        edit["already_stored"]["files"], 0,
        "unchanged frames are not even named: {edit}"
    );
    assert_eq!(edit["carried"]["files"], frames - 12, "{edit}");
    assert_eq!(edit["dropped"]["files"], 1, "{edit}");
    assert_eq!(edit["manifest"]["files"].as_array().map(Vec::len), Some(199));
    assert_eq!(
        edit["manifest"]["metadata"],
        serde_json::json!({"shot": "010"}),
        "the base's metadata is kept"
    );
    println!(
        "edit of a {frames}-frame sequence with 11 frames changed sent {} bytes",
        edit["uploaded"]["bytes"]
    );
    // The farm retries the job: the same version, nothing sent.
    let again = json(run(&[
        "publish",
        "files",
        "seq/plate",
        "auto",
        seq_s,
        "--from",
        "1",
        "--idempotency-key",
        "job-77",
        "--json",
    ]));
    assert_eq!(
        (again["created"].clone(), again["manifest"]["version"].clone()),
        (false.into(), "2".into()),
        "{again}"
    );

    // Only the re-rendered frames, the rest kept.
    let only = dir.path().join("only");
    std::fs::create_dir_all(&only).expect("mkdir");
    std::fs::write(only.join("f0005.exr"), frame(20_005)).expect("write");
    let kept = json(run(&[
        "publish",
        "files",
        "seq/plate",
        "auto",
        only.to_str().expect("utf8"),
        "--from",
        "2",
        "--keep-missing",
        "--json",
    ]));
    assert_eq!(kept["manifest"]["files"].as_array().map(Vec::len), Some(199), "{kept}");
    assert_eq!(
        (kept["uploaded"]["files"].clone(), kept["dropped"]["files"].clone()),
        (1.into(), 0.into())
    );

    // Tags: created only when absent, moved only from where expected.
    run(&["tag", "move", "files", "seq/plate", "hero", "2", "--expect-absent"]);
    let (ok, out, err) = intact(
        &server,
        &["tag", "move", "files", "seq/plate", "hero", "3", "--expect", "1"],
    );
    assert!(!ok && err.contains("points at 2"), "{out}{err}");
    let out = run(&["tag", "move", "files", "seq/plate", "hero", "3", "--expect", "2"]);
    assert!(out.contains("hero: 2 -> 3"), "{out}");
    let shown = run(&["tag", "show", "files", "seq/plate"]);
    assert!(shown.starts_with("hero\t3\t"), "{shown}");
    let history = run(&["tag", "history", "files", "seq/plate", "hero"]);
    assert_eq!(history.lines().count(), 2, "{history}");
    let dest = dir.path().join("out");
    run(&[
        "get",
        "files",
        "seq/plate",
        "--tag",
        "hero",
        "--out",
        dest.to_str().expect("utf8"),
    ]);
    assert_eq!(std::fs::read(dest.join("f0005.exr")).expect("read"), frame(20_005));
    assert_eq!(std::fs::read(dest.join("f0019.exr")).expect("read"), frame(10_019));
}

/// `intact import-files`: a directory the server reads (inside its `[import] allowed_roots`)
/// becomes one version, paths relative to the directory, the bytes taken in by the server;
/// `--json` reports the manifest and how each file came in; a source outside the roots is
/// refused and nothing is published.
#[test]
fn import_files_publishes_a_directory_the_server_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = dir.path().join("renders");
    let shot = roots.join("shot010");
    std::fs::create_dir_all(shot.join("frames")).expect("mkdir");
    std::fs::write(shot.join("frames/0001.exr"), b"frame one").expect("write");
    std::fs::write(shot.join("frames/0002.exr"), b"frame two").expect("write");
    std::fs::write(shot.join("notes.txt"), b"comp notes").expect("write");
    let config = format!("[import]\nallowed_roots = [{:?}]\n", roots.to_str().expect("utf8"));
    let server = Server::start(&dir.path().join("data"), Some(&config), &[]);
    let shot_s = shot.to_str().expect("utf8");

    let (ok, out, err) = intact(
        &server,
        &[
            "import-files",
            "files",
            "shots/010/comp",
            "auto",
            shot_s,
            "--mode",
            "copy",
            "--metadata",
            r#"{"artist": "kim"}"#,
        ],
    );
    assert!(ok, "import-files failed: {out}{err}");
    assert!(
        out.contains("imported files/shots/010/comp@1: 3 files, 28 bytes (3 files by copy)"),
        "{out}"
    );
    let (ok, out, err) = intact(
        &server,
        &[
            "import-files",
            "files",
            "shots/010/comp",
            "auto",
            shot_s,
            "--mode",
            "copy",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let v = one_document(&out);
    assert_eq!(v["created"], true, "{v}");
    assert_eq!(v["manifest"]["version"], "2", "{v}");
    let paths: Vec<&str> = v["manifest"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(paths, ["frames/0001.exr", "frames/0002.exr", "notes.txt"], "{v}");
    assert_eq!(v["modes"], serde_json::json!({"copy": 3}), "{v}");
    let (ok, out, err) = intact(
        &server,
        &[
            "get",
            "files",
            "shots/010/comp",
            "2",
            "--out",
            dir.path().join("out").to_str().expect("utf8"),
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        std::fs::read(dir.path().join("out/frames/0002.exr")).expect("read"),
        b"frame two"
    );

    // Outside the roots: refused, rolled back, no version 3.
    let outside = dir.path().join("elsewhere");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("x.bin"), b"x").expect("write");
    let (ok, out, err) = intact(
        &server,
        &[
            "import-files",
            "files",
            "shots/010/comp",
            "auto",
            outside.to_str().expect("utf8"),
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("outside [import] allowed_roots") && err.contains("rolled back"),
        "{err}"
    );
    let (ok, out, _) = intact(&server, &["ls", "files", "shots/010/comp"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "{out}");
}
