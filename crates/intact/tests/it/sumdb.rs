//! The checksum-database proxy, end to end: a checksum database built by the tests from
//! golang.org/x/mod/sumdb's own server and test log (tests/fixtures/sumdb, with its own key)
//! on loopback, intact proxying it for a Go proxy repo, and the real `go` command verifying
//! the modules it downloads through intact only (the database's name does not resolve, so
//! every lookup and tile must come through intact). Then the database turns hostile: tiles
//! with a changed byte, and a forked log under the same key; intact refuses both.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::go_fixtures::{build_proxy, go_binary, go_command, run};
use crate::harness::{self, Server};

/// Where Debian's golang-golang-x-mod-dev puts golang.org/x/mod.
const GOCODE: &str = "/usr/share/gocode";

pub(crate) struct Database {
    child: Child,
    pub(crate) vkey: String,
    pub(crate) url: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the test database's server (once per test).
pub(crate) fn build_database(go: &Path, dir: &Path) -> PathBuf {
    let have_x_mod = Path::new(GOCODE).join("src/golang.org/x/mod/sumdb").is_dir();
    assert!(
        have_x_mod,
        "golang.org/x/mod is missing under {GOCODE} (Debian's golang-golang-x-mod-dev; scripts/test installs it)"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sumdb/main.go");
    let bin = dir.join("sumdb-server");
    let out = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOCODE)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .expect("go build");
    assert!(
        out.status.success(),
        "building the test database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

pub(crate) fn start_database(bin: &Path, gosum: &Path, flags: &[&str]) -> Database {
    let mut child = Command::new(bin)
        .arg("-gosum")
        .arg(gosum)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the test database");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut field = |prefix: &str| {
        let line = lines.next().expect("a line").expect("read");
        line.strip_prefix(prefix).expect(prefix).to_owned()
    };
    let vkey = field("VKEY ");
    let url = field("URL ");
    Database { child, vkey, url }
}

fn config(upstream: &Path, db: &Database) -> String {
    config_with(upstream, &db.url, &db.vkey, "")
}

fn config_with(upstream: &Path, url: &str, vkey: &str, settings: &str) -> String {
    format!(
        r#"
[[repo]]
name = "go-public"
kind = "proxy"
format = "go"
upstream = "file://{up}"
checksum_db = {{ name = "sum.test.example", url = "{url}", key = "{vkey}" }}
{settings}

[[repo]]
name = "go-nosum"
kind = "proxy"
format = "go"
upstream = "file://{up}"
checksum_db = {{ name = "sum.test.example", url = "{url}", key = "{vkey}" }}
no_sum = ["example.com/pseudo"]
{settings}
"#,
        up = upstream.display(),
    )
}

#[test]
fn go_verifies_go_sum_through_intact_and_a_tampered_or_forked_database_is_refused() {
    let Some(go) = go_binary() else {
        assert!(
            std::env::var_os("INTACT_SUITE_SIZE").is_none(),
            "no go command, though the test command (scripts/test) installs golang-go"
        );
        eprintln!("skipping: no go command");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let proxy = build_proxy(tmp.path());
    // The database's records: the fixtures' go.sum lines, except that it never heard of
    // example.com/pseudo and records other hashes for example.com/legacy's zip and for the
    // go.mod of example.com/many v1.19.99 (as if the upstream had re-tagged them since).
    let gosum = tmp.path().join("go.sum.lines");
    let records: Vec<String> = proxy
        .sums
        .lines()
        .filter(|l| !l.starts_with("example.com/pseudo "))
        .map(|l| {
            if l.starts_with("example.com/legacy v2.0.0+incompatible h1:") {
                "example.com/legacy v2.0.0+incompatible h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()
            } else if l.starts_with("example.com/many v1.19.99/go.mod h1:") {
                "example.com/many v1.19.99/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&gosum, records.join("\n") + "\n").expect("write");
    let bin = build_database(&go, tmp.path());
    let data = tmp.path().join("data");
    let download = |server: &Server, vkey: &str, client: &str, target: &str| {
        let home = tmp.path().join(client);
        std::fs::create_dir_all(&home).expect("mkdir");
        let mut c = go_command(&go, &home, &server.url("/go/go-public"));
        c.current_dir(&home)
            .env("GOSUMDB", vkey)
            .args(["mod", "download", "-json", target]);
        let out = run(c, Duration::from_secs(300));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    // 300 records first, so the log has a full tile (256 records) as well as partial ones.
    let honest = start_database(&bin, &gosum, &["-fill", "300"]);
    let vkey = honest.vkey.clone();
    let server = Server::start(&data, Some(&config(&proxy.dir, &honest)), &[]);
    let http = harness::client();
    let rt = harness::runtime();
    let get = |server: &Server, path: &str| {
        rt.block_on(async {
            let resp = http.get(server.url(path)).send().await.expect("request");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        })
    };
    assert_eq!(get(&server, "/go/go-public/sumdb/sum.test.example/supported").0, 200);
    assert_eq!(get(&server, "/go/go-public/sumdb/sum.golang.org/supported").0, 404);
    for (i, module) in [
        "example.com/util@v1.0.0",
        "example.com/util@v1.1.0",
        "example.com/lib/v2@v2.1.0",
    ]
    .iter()
    .enumerate()
    {
        let (ok, out) = download(&server, &vkey, &format!("client{i}"), module);
        assert!(ok, "{module} through intact's checksum database: {out}");
    }
    // The lookups went through intact: its accepted tree head holds them.
    let (status, latest) = get(&server, "/go/go-public/sumdb/sum.test.example/latest");
    assert_eq!(status, 200, "{latest}");
    assert!(latest.starts_with("go.sum database tree\n303\n"), "{latest}");
    // Module versions fetched through intact were checked against the database first: a
    // module whose upstream bytes differ from the database's record is refused, not cached.
    let (status, body) = get(&server, "/go/go-public/example.com/legacy/@v/v2.0.0+incompatible.zip");
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("checksum database sum.test.example records") && body.contains("re-tagged or tampered"),
        "{body}"
    );
    let (status, body) = get(&server, "/api/v1/repos/go-public/example.com/legacy/@versions");
    assert!(status == 200 && !body.contains("v2.0.0"), "not cached: {body}");
    // The go.mod is checked as well, both when .info/.mod are fetched and in a full version.
    for file in ["info", "zip"] {
        let (status, body) = get(&server, &format!("/go/go-public/example.com/many/@v/v1.19.99.{file}"));
        assert_eq!(status, 502, "{file}: {body}");
        assert!(
            body.contains("example.com/many@v1.19.99/go.mod with h1:"),
            "{file}: {body}"
        );
    }
    // A module the database does not know is not found, and not cached...
    let pseudo = format!("example.com/pseudo/@v/{}.info", crate::go_fixtures::PSEUDO);
    let (status, body) = get(&server, &format!("/go/go-public/{pseudo}"));
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("has no record of it") && body.contains("no_sum"),
        "{body}"
    );
    // ...unless it matches no_sum, which is never checked.
    let (status, body) = get(&server, &format!("/go/go-nosum/{pseudo}"));
    assert_eq!(status, 200, "{body}");
    let (status, latest) = get(&server, "/go/go-public/sumdb/sum.test.example/latest");
    assert!(
        status == 200 && latest.starts_with("go.sum database tree\n305\n"),
        "{latest}"
    );

    // A full tile, asked for (as go does to check an older record): verified, then stored.
    let full = rt.block_on(async {
        let url = server.url("/go/go-public/sumdb/sum.test.example/tile/8/0/000");
        let resp = http.get(url).send().await.expect("request");
        (resp.status().as_u16(), resp.bytes().await.expect("body").to_vec())
    });
    assert_eq!((full.0, full.1.len()), (200, 256 * 32));
    let url = honest.url.clone();
    drop(honest);

    // Offline, with the database gone: the accepted tree head, its tiles and the lookups made
    // are served from the store; a lookup never made needs the database.
    drop(server);
    let server = Server::start(
        &data,
        Some(&config_with(&proxy.dir, &url, &vkey, r#"network_mode = "offline""#)),
        &[],
    );
    let (status, offline_latest) = get(&server, "/go/go-public/sumdb/sum.test.example/latest");
    assert_eq!((status, offline_latest.as_str()), (200, latest.as_str()));
    let tile = |path: &str| {
        rt.block_on(async {
            let url = server.url(&format!("/go/go-public/sumdb/sum.test.example/{path}"));
            let resp = http.get(url).send().await.expect("request");
            (resp.status().as_u16(), resp.bytes().await.expect("body").len())
        })
    };
    assert_eq!(
        tile("tile/8/0/000"),
        (200, 256 * 32),
        "a full tile, stored when verified"
    );
    assert_eq!(
        tile("tile/8/0/001.p/49"),
        (200, 49 * 32),
        "the accepted tree's partial tile"
    );
    assert_eq!(tile("tile/8/1/000.p/1"), (200, 32));
    assert_eq!(tile("tile/8/0/001.p/50").0, 404, "beyond the accepted tree");
    assert_eq!(tile("tile/8/7/999").0, 404);
    // Lookups made while online were stored: a go command with no go.sum, whose only route
    // out is this offline intact, verifies what it downloads.
    let (status, body) = get(
        &server,
        "/go/go-public/sumdb/sum.test.example/lookup/example.com/util@v1.0.0",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("example.com/util v1.0.0 h1:"), "{body}");
    let (ok, out) = download(&server, &vkey, "offline-client", "example.com/lib/v2@v2.1.0");
    assert!(ok, "verified offline: {out}");
    let (status, body) = get(
        &server,
        "/go/go-public/sumdb/sum.test.example/lookup/example.com/never@v1.0.0",
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("offline"), "{body}");

    // The same log, restarted, now changing a byte of every tile it serves: refused, so go
    // cannot verify (and says why).
    let same_log = "example.com/util@v1.0.0,example.com/util@v1.1.0,example.com/lib/v2@v2.1.0,example.com/legacy@v2.0.0+incompatible,example.com/many@v1.19.99";
    let tampering = start_database(&bin, &gosum, &["-fill", "300", "-prime", same_log, "-tamper"]);
    drop(server);
    let server = Server::start(&data, Some(&config(&proxy.dir, &tampering)), &[]);
    let (ok, out) = download(&server, &vkey, "tampered", "github.com/Azure/go-thing@v1.0.0");
    assert!(!ok, "a tampered tile was served: {out}");
    assert!(
        out.contains("502") && out.contains("tiles that do not verify") && out.contains("refused"),
        "{out}"
    );
    drop(tampering);

    // A forked log under the same key, larger than the accepted tree (the tile that is partial
    // in the accepted tree is full in the fork's): its tree heads do not extend the accepted
    // one, and none of its tiles may be kept.
    let forked = start_database(&bin, &gosum, &["-fork", "-fill", "600", "-prime", same_log]);
    drop(server);
    let server = Server::start(&data, Some(&config(&proxy.dir, &forked)), &[]);
    let (ok, out) = download(&server, &vkey, "forked", "github.com/Azure/go-thing@v1.0.0");
    assert!(!ok, "a forked log was served: {out}");
    assert!(out.contains("502") && out.contains("a forked log"), "{out}");
    let (status, latest) = get(&server, "/go/go-public/sumdb/sum.test.example/latest");
    assert_eq!(status, 502, "{latest}");
    assert!(latest.contains("forked"), "{latest}");
    drop(forked);

    // The honest database again: nothing the fork sent was kept, so everything verifies.
    let honest = start_database(&bin, &gosum, &["-fill", "300", "-prime", same_log]);
    drop(server);
    let server = Server::start(&data, Some(&config(&proxy.dir, &honest)), &[]);
    let (ok, out) = download(&server, &vkey, "honest-again", "github.com/Azure/go-thing@v1.0.0");
    assert!(ok, "{out}");
    let (status, latest) = get(&server, "/go/go-public/sumdb/sum.test.example/latest");
    assert!(
        status == 200 && latest.starts_with("go.sum database tree\n306\n"),
        "{latest}"
    );
    drop(honest);

    // The database's key changes under the same name (and the configuration follows): the
    // stored tree heads and lookups no longer verify. They are passed over and asked for
    // again, never served, and never an error that sticks.
    let rekeyed = start_database(&bin, &gosum, &["-rekey", "-fill", "300", "-prime", same_log]);
    assert_ne!(rekeyed.vkey, vkey);
    drop(server);
    let server = Server::start(&data, Some(&config(&proxy.dir, &rekeyed)), &[]);
    let (ok, out) = download(&server, &rekeyed.vkey, "rekeyed", "example.com/util@v1.0.0");
    assert!(
        ok,
        "the stored lookup, signed with the old key, was dropped and asked again: {out}"
    );
    let (status, rekeyed_latest) = get(&server, "/go/go-public/sumdb/sum.test.example/latest");
    assert_eq!(status, 200, "{rekeyed_latest}");
    assert_ne!(
        rekeyed_latest, latest,
        "the tree head signed with the old key is not served"
    );
}
