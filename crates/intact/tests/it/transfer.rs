//! Air-gapped transfer end to end (docs/transfer.md): `intact export` from one real server,
//! `intact import` into another, through the real binary. Round trips (shared blobs, a large
//! file, metadata), incremental exports, idempotent re-imports, conflicts, damaged and cut
//! archives, the admin rule; a Go proxy repo with its checksum database carried to an offline
//! server that the real `go` command builds from; and the same on PostgreSQL + S3.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::go_fixtures::{build_proxy, go_command, need_go, run_ok};
use crate::harness::{self, BIN, Server, pattern};
use crate::sumdb::{build_database, start_database};
use crate::torture::backend::Backend;

const REPOS: &str = r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "mirror"
kind = "hosted"

[[repo]]
name = "fresh"
kind = "hosted"

[[repo]]
name = "gomods"
kind = "hosted"
format = "go"

# A staging repo whose upstream cannot be reached (as behind an air gap).
[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "file:///nonexistent/intact-transfer-upstream"
[repo.artifacts]
payload = { files = ["payload.bin"] }
"#;

/// The `intact` CLI against `base`; (succeeded, stdout, stderr).
fn intact(base: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    harness::cli(base, token, args, &[])
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn publish(base: &str, repo: &str, name: &str, version: &str, files: &[(&str, &[u8])], extra: &[&str], dir: &Path) {
    let src = dir.join(format!("src-{repo}-{}-{version}", name.replace('/', "_")));
    std::fs::create_dir_all(&src).expect("mkdir");
    for (path, bytes) in files {
        std::fs::write(src.join(path), bytes).expect("write");
    }
    let src = format!("{}/", path_str(&src));
    let mut args = vec!["publish", repo, name, version, src.as_str()];
    args.extend_from_slice(extra);
    let (ok, out, err) = intact(base, None, &args);
    assert!(ok, "publish {repo}/{name}@{version}: {out}{err}");
}

/// `intact export --json`: its result.
fn export(base: &str, repo: &str, since: i64, out: &Path) -> Value {
    let since = since.to_string();
    let (ok, stdout, err) = intact(
        base,
        None,
        &["export", "--repo", repo, "--since", &since, path_str(out), "--json"],
    );
    assert!(ok, "export {repo} --since {since}: {stdout}{err}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("export --json printed {stdout:?}: {e}"))
}

/// `intact import --json`: (succeeded, its result).
fn import(base: &str, token: Option<&str>, archive: &Path, extra: &[&str]) -> (bool, Value, String) {
    let mut args = vec!["import", path_str(archive), "--json"];
    args.extend_from_slice(extra);
    let (ok, stdout, err) = intact(base, token, &args);
    let result = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (ok, result, format!("{stdout}{err}"))
}

fn get(url: &str) -> (u16, Vec<u8>) {
    harness::runtime().block_on(async {
        let resp = harness::client().get(url).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    })
}

/// The manifest of repo/name@version, if it is there.
fn manifest(server: &Server, repo: &str, name: &str, version: &str) -> Option<Value> {
    let (status, body) = get(&server.url(&format!("/api/v1/repos/{repo}/{name}/@v/{version}")));
    match status {
        200 => Some(serde_json::from_slice(&body).expect("manifest json")),
        404 => None,
        other => panic!("{repo}/{name}@{version}: {other} {}", String::from_utf8_lossy(&body)),
    }
}

/// What must survive a transfer: the files (path, size, sha256) and the metadata.
fn content(m: &Value) -> (Value, Value) {
    (m["files"].clone(), m["metadata"].clone())
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex_of(&Sha256::digest(bytes))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The archive's entry names, in order.
fn entries(archive: &Path) -> Vec<String> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).expect("open archive"));
    tar.entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect()
}

/// Flips one byte in the middle of the blob `digest` inside the archive (tar's own header
/// checksums cover headers only, so only the sha256 can catch it).
fn flip_byte_of_blob(archive: &Path, digest: &str) {
    let offset = {
        let mut tar = tar::Archive::new(std::fs::File::open(archive).expect("open archive"));
        let entry = tar
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry"))
            .find(|e| e.path().expect("path").to_string_lossy() == format!("blobs/sha256/{digest}"))
            .unwrap_or_else(|| panic!("blob {digest} in the archive"));
        entry.raw_file_position() + entry.size() / 2
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(archive)
        .expect("open");
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.read_exact(&mut byte).expect("read");
    byte[0] ^= 0x20;
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&byte).expect("write");
}

#[test]
fn export_and_import_round_trip_incrementally_idempotently_and_refuse_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path();
    let a = Server::start(&tmp.join("a"), Some(REPOS), &[]);
    let b = Server::start(&tmp.join("b"), Some(REPOS), &[]);
    let big = pattern(7, 24 << 20);
    publish(
        &a.base,
        "files",
        "app",
        "1",
        &[("big.bin", &big), ("LICENSE", b"MIT")],
        &[],
        tmp,
    );
    publish(
        &a.base,
        "files",
        "app",
        "2",
        &[("small.bin", b"two"), ("LICENSE", b"MIT")],
        &[],
        tmp,
    );
    publish(
        &a.base,
        "files",
        "docs/manual",
        "2026.1",
        &[("index.html", b"<h1>manual</h1>")],
        &[
            "--meta",
            "by=test",
            "--metadata-json",
            r#"{"n": 1, "nested": {"list": [1, 2]}}"#,
        ],
        tmp,
    );

    // A full export: three versions, each distinct blob once (LICENSE is shared).
    let full = tmp.join("full.tar");
    let first = export(&a.base, "files", 0, &full);
    assert_eq!(
        (first["versions"].as_u64(), first["blobs"].as_u64()),
        (Some(3), Some(4)),
        "{first}"
    );
    assert_eq!(first["skipped"], serde_json::json!([]));
    let until = first["until"].as_i64().expect("until");
    assert!(until >= 3, "{first}");
    let names = entries(&full);
    assert_eq!(names.first().map(String::as_str), Some("intact-export.json"));
    assert_eq!(names.last().map(String::as_str), Some("intact-export-end.json"));
    assert_eq!(names.iter().filter(|n| n.starts_with("blobs/")).count(), 4, "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.starts_with("versions/")).count(),
        3,
        "{names:?}"
    );
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(tmp)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Imported whole: the same files and metadata, the large file byte for byte.
    let (ok, result, out) = import(&b.base, None, &full, &[]);
    assert!(ok, "{out}");
    assert_eq!(
        (result["imported"].as_u64(), result["already_present"].as_u64()),
        (Some(3), Some(0)),
        "{out}"
    );
    for (name, version) in [("app", "1"), ("app", "2"), ("docs/manual", "2026.1")] {
        let there = manifest(&a, "files", name, version).expect("on a");
        let here = manifest(&b, "files", name, version).expect("imported");
        assert_eq!(content(&there), content(&here), "{name}@{version}");
    }
    let docs = manifest(&b, "files", "docs/manual", "2026.1").expect("docs");
    assert_eq!(docs["metadata"]["nested"]["list"], serde_json::json!([1, 2]), "{docs}");
    assert_eq!(docs["metadata"]["by"], "test", "{docs}");
    let (status, body) = get(&b.url("/api/v1/repos/files/app/@v/1/big.bin"));
    assert_eq!(status, 200);
    assert!(body == big, "the large file came through changed");

    // Importing again changes nothing and says so.
    let (ok, result, out) = import(&b.base, None, &full, &[]);
    assert!(ok, "{out}");
    assert_eq!(
        (result["imported"].as_u64(), result["already_present"].as_u64()),
        (Some(0), Some(3)),
        "{out}"
    );

    // Incremental: only what was committed after the last export's `until`; self-contained
    // (the shared LICENSE travels again).
    publish(
        &a.base,
        "files",
        "app",
        "3",
        &[("three.bin", b"three"), ("LICENSE", b"MIT")],
        &[],
        tmp,
    );
    let inc = tmp.join("inc.tar");
    let second = export(&a.base, "files", until, &inc);
    assert_eq!(
        (second["versions"].as_u64(), second["blobs"].as_u64()),
        (Some(1), Some(2)),
        "{second}"
    );
    let until2 = second["until"].as_i64().expect("until");
    assert!(until2 > until);
    let (ok, result, out) = import(&b.base, None, &inc, &[]);
    assert!(ok && result["imported"].as_u64() == Some(1), "{out}");
    assert!(manifest(&b, "files", "app", "3").is_some());
    // A `--since` past this server's log is refused (the archive came from elsewhere).
    let (ok, _, err) = intact(
        &a.base,
        None,
        &[
            "export",
            "--repo",
            "files",
            "--since",
            "999999",
            path_str(&tmp.join("x.tar")),
        ],
    );
    assert!(!ok && err.contains("ends before event 999999"), "{err}");

    // Into another repo.
    let (ok, result, out) = import(&b.base, None, &full, &["--repo", "mirror"]);
    assert!(ok && result["imported"].as_u64() == Some(3), "{out}");
    assert!(manifest(&b, "mirror", "app", "1").is_some());
    // Into a staging (generic proxy) repo, twice: nothing is staged from its (unreachable)
    // upstream; the second time the commits find every version already there.
    let (ok, result, out) = import(&b.base, None, &full, &["--repo", "builds"]);
    assert!(ok && result["imported"].as_u64() == Some(3), "{out}");
    let (ok, result, out) = import(&b.base, None, &full, &["--repo", "builds"]);
    assert!(ok && result["already_present"].as_u64() == Some(3), "{out}");
    assert!(manifest(&b, "builds", "app", "1").is_some());
    // Not into a repo of another format, nor an unknown one.
    let (ok, _, out) = import(&b.base, None, &full, &["--repo", "gomods"]);
    assert!(!ok && out.contains("generic") && out.contains("gomods"), "{out}");
    let (ok, _, out) = import(&b.base, None, &full, &["--repo", "nosuch"]);
    assert!(!ok && out.contains("nosuch"), "{out}");

    // A conflict: the same version with other content on both sides. Reported, left as it
    // was, the exit status says so; the rest is imported all the same.
    publish(&b.base, "files", "conflict", "1", &[("side.txt", b"b side")], &[], tmp);
    publish(&a.base, "files", "conflict", "1", &[("side.txt", b"a side")], &[], tmp);
    publish(&a.base, "files", "other", "1", &[("other.txt", b"other")], &[], tmp);
    let conf = tmp.join("conflict.tar");
    let third = export(&a.base, "files", until2, &conf);
    assert_eq!(third["versions"].as_u64(), Some(2), "{third}");
    let (ok, result, out) = import(&b.base, None, &conf, &[]);
    assert!(!ok, "a conflict must fail the import: {out}");
    assert_eq!(
        (result["imported"].as_u64(), result["conflicts"].as_u64()),
        (Some(1), Some(1)),
        "{out}"
    );
    let conflict = result["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == "conflict")
        .expect("conflict outcome")
        .clone();
    assert_eq!(conflict["outcome"], "conflict", "{conflict}");
    assert!(
        conflict["message"].as_str().unwrap_or_default().contains("side.txt"),
        "{conflict}"
    );
    let kept = manifest(&b, "files", "conflict", "1").expect("kept");
    assert_eq!(kept["files"][0]["sha256"], hex_sha256(b"b side"));
    assert!(manifest(&b, "files", "other", "1").is_some());

    // A damaged archive: a flipped byte in one version's blob. That version is refused with
    // nothing of it committed; the other is imported.
    let damaged = tmp.join("damaged.tar");
    std::fs::copy(&conf, &damaged).expect("copy");
    flip_byte_of_blob(&damaged, &hex_sha256(b"a side"));
    let (ok, result, out) = import(&b.base, None, &damaged, &["--repo", "fresh"]);
    assert!(!ok, "{out}");
    assert_eq!(
        (result["imported"].as_u64(), result["failed"].as_u64()),
        (Some(1), Some(1)),
        "{out}"
    );
    let failed = result["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["outcome"] == "failed")
        .expect("failed outcome")
        .clone();
    assert!(
        failed["name"] == "conflict" && failed["message"].as_str().unwrap_or_default().contains("damaged"),
        "{failed}"
    );
    assert!(
        manifest(&b, "fresh", "conflict", "1").is_none(),
        "nothing of a damaged version is committed"
    );
    assert!(manifest(&b, "fresh", "other", "1").is_some());

    // A cut archive is refused before anything is imported.
    let cut = tmp.join("cut.tar");
    let bytes = std::fs::read(&full).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() - 4096]).expect("write");
    let (ok, _, out) = import(&b.base, None, &cut, &["--repo", "fresh"]);
    assert!(!ok && out.contains("incomplete"), "{out}");
    assert!(
        manifest(&b, "fresh", "app", "1").is_none(),
        "nothing of a cut archive is imported"
    );

    // To stdout (`-`): the same archive format.
    let out = Command::new(BIN)
        .args(["export", "--repo", "files", "--since", &until2.to_string(), "-"])
        .env("INTACT_SERVER", &a.base)
        .env_remove("INTACT_TOKEN")
        .env("INTACT_CLI_CONFIG", "/nonexistent/intact-cli.toml")
        .output()
        .expect("export to stdout");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let piped = tmp.join("piped.tar");
    std::fs::write(&piped, &out.stdout).expect("write");
    let (ok, result, out) = import(&b.base, None, &piped, &["--repo", "mirror"]);
    assert!(ok && result["imported"].as_u64() == Some(2), "{out}");

    // Imports are an admin's: a token that may publish into the repo is not enough.
    let (ok, out, err) = intact(&b.base, None, &["token", "create", "root", "--scope", "*:admin"]);
    assert!(ok, "{out}{err}");
    let root = out.lines().last().expect("secret").trim().to_owned();
    let (ok, out, err) = intact(
        &b.base,
        Some(&root),
        &["token", "create", "publisher", "--scope", "fresh:publish"],
    );
    assert!(ok, "{out}{err}");
    let publisher = out.lines().last().expect("secret").trim().to_owned();
    harness::wait_until("access control on", std::time::Duration::from_secs(30), || {
        get(&b.url("/api/v1/repos/fresh")).0 == 401
    });
    publish_as(&b.base, &publisher, tmp);
    let (ok, _, out) = import(&b.base, Some(&publisher), &inc, &["--repo", "fresh"]);
    assert!(!ok && out.contains("*:admin"), "{out}");
    assert!(manifest_as(&b, &root, "fresh", "app", "3").is_none());
    let (ok, result, out) = import(&b.base, Some(&root), &inc, &["--repo", "fresh"]);
    assert!(ok && result["imported"].as_u64() == Some(1), "{out}");

    // A blob damaged on the exporting server: the export fails and leaves no archive, not
    // even a partial one.
    let big_hex = hex_sha256(&big);
    let blob = a.data_dir.join("blobs/sha256").join(&big_hex[..2]).join(&big_hex);
    let mut rotten = std::fs::read(&blob).expect("blob file");
    rotten[1 << 20] ^= 1;
    std::fs::write(&blob, rotten).expect("damage the blob");
    let failed_out = tmp.join("failed.tar");
    let (ok, _, err) = intact(&a.base, None, &["export", "--repo", "files", path_str(&failed_out)]);
    assert!(!ok, "an export over a damaged blob must fail: {err}");
    assert!(!failed_out.exists(), "a failed export left {}", failed_out.display());
    let leftovers: Vec<_> = std::fs::read_dir(tmp)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("failed.tar"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A publisher token still publishes (the admin rule is about imports only).
fn publish_as(base: &str, token: &str, dir: &Path) {
    let src = dir.join("by-publisher.txt");
    std::fs::write(&src, b"publisher").expect("write");
    let (ok, out, err) = intact(
        base,
        Some(token),
        &["publish", "fresh", "by-publisher", "1", path_str(&src)],
    );
    assert!(ok, "{out}{err}");
}

fn manifest_as(server: &Server, token: &str, repo: &str, name: &str, version: &str) -> Option<Value> {
    harness::runtime().block_on(async {
        let resp = harness::client()
            .get(server.url(&format!("/api/v1/repos/{repo}/{name}/@v/{version}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        match resp.status().as_u16() {
            200 => Some(resp.json().await.expect("json")),
            404 => None,
            other => panic!("{repo}/{name}@{version}: {other}"),
        }
    })
}

fn go_config(upstream: &Path, db_url: &str, vkey: &str, settings: &str) -> String {
    format!(
        r#"
[[repo]]
name = "go-public"
kind = "proxy"
format = "go"
upstream = "file://{up}"
checksum_db = {{ name = "sum.test.example", url = "{db_url}", key = "{vkey}" }}
{settings}
"#,
        up = upstream.display(),
    )
}

/// A main module using two fixture modules (and util through lib), with its go.sum.
fn write_offline_app(dir: &Path, sums: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let go_mod = "module example.com/offline\n\ngo 1.19\n\nrequire (\n\texample.com/lib/v2 v2.1.0\n\tgithub.com/Azure/go-thing v1.0.0\n)\n\nrequire example.com/util v1.1.0 // indirect\n";
    let main_go = "package main\n\nimport (\n\t\"fmt\"\n\n\tlib \"example.com/lib/v2\"\n\tthing \"github.com/Azure/go-thing\"\n)\n\nfunc main() { fmt.Println(lib.Message() + \" | \" + thing.Name()) }\n";
    let lines: Vec<&str> = sums
        .lines()
        .filter(|l| {
            l.starts_with("example.com/lib/v2 v2.1.0")
                || l.starts_with("example.com/util v1.1.0")
                || l.starts_with("github.com/Azure/go-thing v1.0.0")
        })
        .collect();
    assert_eq!(lines.len(), 6, "go.sum lines of the app's modules: {lines:?}");
    std::fs::write(dir.join("go.mod"), go_mod).expect("go.mod");
    std::fs::write(dir.join("main.go"), main_go).expect("main.go");
    std::fs::write(dir.join("go.sum"), lines.join("\n") + "\n").expect("go.sum");
}

#[test]
fn a_go_proxy_repo_moves_with_its_checksum_database_and_go_builds_from_the_offline_copy() {
    let Some(go) = need_go("transfer of a Go proxy repo") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path();
    let proxy = build_proxy(tmp);
    let gosum = tmp.join("go.sum.lines");
    std::fs::write(&gosum, &proxy.sums).expect("write");
    let bin = build_database(&go, tmp);
    // 300 records first, so the log has a full tile as well as partial ones.
    let database = start_database(&bin, &gosum, &["-fill", "300"]);
    let vkey = database.vkey.clone();
    let db_url = database.url.clone();

    // The connected side: go downloads the app's modules through intact, which checks each
    // against the checksum database and keeps its tree head and tiles.
    let a = Server::start(&tmp.join("a"), Some(&go_config(&proxy.dir, &db_url, &vkey, "")), &[]);
    for (i, module) in [
        "example.com/lib/v2@v2.1.0",
        "example.com/util@v1.1.0",
        "github.com/Azure/go-thing@v1.0.0",
    ]
    .iter()
    .enumerate()
    {
        let home = tmp.join(format!("online{i}"));
        std::fs::create_dir_all(&home).expect("mkdir");
        let mut c = go_command(&go, &home, &a.url("/go/go-public"));
        c.current_dir(&home)
            .env("GOSUMDB", &vkey)
            .args(["mod", "download", "-json", module]);
        run_ok(c, &format!("go mod download {module} through the connected intact"));
    }
    let (status, latest) = get(&a.url("/go/go-public/sumdb/sum.test.example/latest"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&latest));
    let (status, full_tile) = get(&a.url("/go/go-public/sumdb/sum.test.example/tile/8/0/000"));
    assert_eq!((status, full_tile.len()), (200, 256 * 32));
    let archive = tmp.join("go-public.tar");
    let exported = export(&a.base, "go-public", 0, &archive);
    let names = entries(&archive);
    assert!(
        names.len() > 4 && exported["versions"].as_u64().unwrap_or(0) >= 4,
        "{exported} {names:?}"
    );
    // The checksum database's state (tree head, tiles, lookups) travels as the repo's own
    // internal versions.
    let (status, listed) = get(&a.url("/api/v1/repos/go-public/names?prefix=@sumdb/"));
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&listed).expect("names");
    assert!(
        listed["names"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == "@sumdb/sum.test.example/latest")),
        "{listed}"
    );
    drop(a);
    drop(database);

    // The air-gapped side: offline, the database unreachable, nothing upstream.
    let empty = tmp.join("no-upstream");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let b = Server::start(
        &tmp.join("b"),
        Some(&go_config(&empty, &db_url, &vkey, r#"network_mode = "offline""#)),
        &[],
    );
    let (ok, result, out) = import(&b.base, None, &archive, &[]);
    assert!(ok, "{out}");
    assert_eq!(result["imported"], exported["versions"], "{out}");
    let (status, offline_latest) = get(&b.url("/go/go-public/sumdb/sum.test.example/latest"));
    assert_eq!(
        (status, offline_latest),
        (200, latest),
        "the accepted tree head travelled"
    );
    let (status, tile) = get(&b.url("/go/go-public/sumdb/sum.test.example/tile/8/0/000"));
    assert_eq!((status, tile), (200, full_tile), "the stored full tile travelled");

    // go builds the app from the imported copy alone, its go.sum verified, with the checksum
    // database pointed at the imported instance.
    let home = tmp.join("offline-client");
    let app = home.join("app");
    write_offline_app(&app, &proxy.sums);
    let mut c = go_command(&go, &home, &b.url("/go/go-public"));
    c.current_dir(&app)
        .env(
            "GOSUMDB",
            format!("{vkey} {}", b.url("/go/go-public/sumdb/sum.test.example")),
        )
        .env("GOFLAGS", "-mod=mod -modcacherw")
        .args(["build", "-o", "offline-app", "."]);
    run_ok(c, "go build from the imported, offline copy");
    let mut c = go_command(&go, &home, &b.url("/go/go-public"));
    c.current_dir(&app)
        .env("GOFLAGS", "-mod=mod -modcacherw")
        .args(["mod", "verify"]);
    let verified = run_ok(c, "go mod verify");
    assert!(verified.contains("all modules verified"), "{verified}");
    let printed = run_ok(Command::new(app.join("offline-app")), "the built app");
    assert!(
        printed.contains("lib v2.1.0 says hello from util v1.1.0") && printed.contains("Azure thing"),
        "{printed}"
    );
    // Lookups the connected side made travelled too: go, with no go.sum at all, verifies a
    // download through the offline copy of the checksum database.
    let (status, lookup) = get(&b.url("/go/go-public/sumdb/sum.test.example/lookup/example.com/lib/v2@v2.1.0"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&lookup));
    let home = tmp.join("offline-downloader");
    std::fs::create_dir_all(&home).expect("mkdir");
    let mut c = go_command(&go, &home, &b.url("/go/go-public"));
    c.current_dir(&home)
        .env(
            "GOSUMDB",
            format!("{vkey} {}", b.url("/go/go-public/sumdb/sum.test.example")),
        )
        .args(["mod", "download", "-json", "example.com/lib/v2@v2.1.0"]);
    run_ok(c, "go mod download verified through the imported checksum database");
    // Importing the same archive again is a no-op.
    let (ok, result, out) = import(&b.base, None, &archive, &[]);
    assert!(ok && result["imported"].as_u64() == Some(0), "{out}");
}

#[test]
fn export_and_import_round_trip_on_postgres_and_s3() {
    let rt = harness::runtime();
    let backend_a = Backend::postgres_and_s3(&rt, "transfer-a");
    let backend_b = Backend::postgres_and_s3(&rt, "transfer-b");
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path();
    let repos = |backend: &Backend| format!("{}\n{REPOS}", backend.config());
    let a = Server::start_with_env(
        &tmp.join("a-data"),
        &tmp.join("a"),
        Some(&repos(&backend_a)),
        &[],
        &backend_a.env(),
    );
    let b = Server::start_with_env(
        &tmp.join("b-data"),
        &tmp.join("b"),
        Some(&repos(&backend_b)),
        &[],
        &backend_b.env(),
    );
    let big = pattern(11, 9 << 20);
    publish(
        &a.base,
        "files",
        "app",
        "1",
        &[("big.bin", &big), ("LICENSE", b"MIT")],
        &[],
        tmp,
    );
    publish(
        &a.base,
        "files",
        "app",
        "2",
        &[("small.bin", b"two"), ("LICENSE", b"MIT")],
        &["--meta", "by=pg"],
        tmp,
    );
    let archive = tmp.join("pg.tar");
    let result = export(&a.base, "files", 0, &archive);
    assert_eq!(
        (result["versions"].as_u64(), result["blobs"].as_u64()),
        (Some(2), Some(3)),
        "{result}"
    );
    let (ok, imported, out) = import(&b.base, None, &archive, &[]);
    assert!(ok && imported["imported"].as_u64() == Some(2), "{out}");
    for version in ["1", "2"] {
        let there = manifest(&a, "files", "app", version).expect("on a");
        let here = manifest(&b, "files", "app", version).expect("imported");
        assert_eq!(content(&there), content(&here), "app@{version}");
    }
    let (status, body) = get(&b.url("/api/v1/repos/files/app/@v/1/big.bin"));
    assert!(status == 200 && body == big, "the large file through S3");
    let (ok, again, out) = import(&b.base, None, &archive, &[]);
    assert!(ok && again["already_present"].as_u64() == Some(2), "{out}");
    // And back out of PostgreSQL + S3: B's export imports into A's `mirror`.
    let back = tmp.join("back.tar");
    let result = export(&b.base, "files", 0, &back);
    assert_eq!(result["versions"].as_u64(), Some(2), "{result}");
    let (ok, imported, out) = import(&a.base, None, &back, &["--repo", "mirror"]);
    assert!(ok && imported["imported"].as_u64() == Some(2), "{out}");
    drop(a);
    drop(b);
    drop(backend_a);
    drop(backend_b);
}
