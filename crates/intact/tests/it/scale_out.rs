//! The scale-out tools end to end, with the real binary on the machine's PostgreSQL and a
//! real Garage: `intact migrate` from an embedded data dir, and the sample deployment in
//! `deploy/local` (three replicas behind nginx) serving through its load balancer.

use std::path::Path;
use std::process::Command;

use intact_testkit::{TestDatabase, shared_garage};
use serde_json::Value;

use crate::harness::{BIN, Server, client, runtime};

/// Runs the `intact` CLI against `server` with `env`; (succeeded, stdout, stderr).
fn intact(server: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    crate::harness::cli(server, None, args, env)
}

fn publish(server: &str, name: &str, version: &str, files: &[(&str, &[u8])], dir: &Path) {
    let src = dir.join(format!("{}-{version}", name.replace('/', "_")));
    std::fs::create_dir_all(&src).expect("mkdir");
    for (path, bytes) in files {
        std::fs::write(src.join(path), bytes).expect("write");
    }
    let src = src.to_str().expect("utf8").to_owned() + "/";
    let (ok, out, err) = intact(
        server,
        &["publish", "files", name, version, &src, "--meta", "by=test"],
        &[],
    );
    assert!(ok, "publish {name}@{version}: {out}{err}");
}

fn get(url: &str) -> (u16, Vec<u8>) {
    runtime().block_on(async {
        let resp = client().get(url).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    })
}

fn big(seed: u8) -> Vec<u8> {
    (0..3_000_000u32)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed))
        .collect()
}

#[test]
fn migrate_moves_an_embedded_data_dir_to_postgres_and_s3_and_a_replica_serves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let large = big(7);
    {
        let embedded = Server::start(&data, None, &[]);
        publish(
            &embedded.base,
            "app",
            "1",
            &[("app.bin", &large), ("LICENSE", b"MIT")],
            dir.path(),
        );
        publish(
            &embedded.base,
            "app",
            "2",
            &[("app.bin", b"two"), ("LICENSE", b"MIT")],
            dir.path(),
        );
        publish(
            &embedded.base,
            "docs/manual",
            "2026.1",
            &[("index.html", b"<h1>hi</h1>")],
            dir.path(),
        );
        // Refused while the server owns the data dir.
        let db = runtime().block_on(TestDatabase::create());
        let (ok, _, err) = intact(
            "",
            &[
                "migrate",
                "--data-dir",
                data.to_str().expect("utf8"),
                "--to-catalog",
                &db.url,
                "--to-blobs",
                "s3://b/p",
            ],
            &[],
        );
        assert!(!ok && err.contains("in use"), "{err}");
    }
    let db = runtime().block_on(TestDatabase::create());
    let garage = shared_garage();
    let blobs_url = format!("s3://{}/{}", garage.bucket, garage.prefix("migrate"));
    let creds = [
        ("AWS_ACCESS_KEY_ID", garage.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", garage.secret_access_key.as_str()),
    ];
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--to-catalog",
            &db.url,
            "--to-blobs",
            &blobs_url,
            "--to-blobs-endpoint",
            &garage.endpoint,
            "--to-blobs-region",
            &garage.region,
        ];
        args.extend_from_slice(extra);
        intact("", &args, &creds)
    };
    let (ok, out, err) = migrate(&["--json"]);
    assert!(ok, "migrate: {out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("report: {e}: {out}"));
    assert_eq!(report["copy"]["versions_copied"], 3, "{out}");
    assert_eq!(report["check"]["versions_checked"], 3, "{out}");
    // Again: nothing to copy, still verified (said in words without --json).
    let (ok, out, err) = migrate(&[]);
    assert!(ok, "second migrate: {out}{err}");
    assert!(
        out.contains("copied 0 versions (3 already there)") && out.contains("checked 3 versions"),
        "{out}"
    );

    // A replica on the target serves every version, byte for byte.
    let config = format!(
        "[catalog]\nurl = \"{}\"\n\n[blobs]\nurl = \"{blobs_url}\"\nendpoint = \"{}\"\nregion = \"{}\"\n",
        db.url, garage.endpoint, garage.region
    );
    let replica = {
        // The child gets the credentials; this process's environment is left alone.
        let side = dir.path().join("replica");
        std::fs::create_dir_all(&side).expect("mkdir");
        let cfg = side.join("intact.toml");
        std::fs::write(&cfg, &config).expect("config");
        ReplicaProcess::start(&side.join("data"), &cfg, &creds)
    };
    let (status, body) = get(&format!("{}/api/v1/repos/files/app/@v/1/app.bin", replica.base));
    assert_eq!(status, 200);
    assert!(body == large, "the large file came back identical");
    let (status, body) = get(&format!(
        "{}/api/v1/repos/files/docs/manual/@v/2026.1/index.html",
        replica.base
    ));
    assert_eq!((status, body.as_slice()), (200, b"<h1>hi</h1>".as_slice()));
    let (_, versions) = get(&format!("{}/api/v1/repos/files/app/@versions", replica.base));
    let versions: Value = serde_json::from_slice(&versions).expect("json");
    let listed: Vec<&str> = versions["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(listed, ["1", "2"], "commit order kept");
}

/// `intact serve` with a config file and extra environment (the S3 credentials).
struct ReplicaProcess {
    child: std::process::Child,
    base: String,
}

impl ReplicaProcess {
    fn start(data: &Path, config: &Path, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .env("INTACT_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn intact");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("intact did not start: {line:?}"))
            .to_owned();
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `deploy/local/down --purge` when dropped, so a failed test leaves nothing running.
struct Deployment {
    env: Vec<(String, String)>,
}

impl Deployment {
    fn script(&self, name: &str, args: &[&str]) -> std::process::Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local");
        Command::new(root.join(name))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run deploy script")
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.script("down", &["--purge"]);
    }
}

/// A base port with the 13 ports after it free (nginx, 3 replicas, Garage's 3).
fn free_port_block() -> u16 {
    for _ in 0..200 {
        let base = 20_000 + (rand::random::<u16>() % 40_000);
        if (0..13).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no block of 13 free ports found");
}

#[test]
fn the_sample_deployment_serves_through_its_load_balancer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port_block();
    let deployment = Deployment {
        env: vec![
            ("INTACT_BIN".into(), BIN.into()),
            ("INTACT_DEPLOY_DIR".into(), dir.path().join("run").display().to_string()),
            (
                "INTACT_DEPLOY_DB".into(),
                format!("intact_deploy_{:08x}", rand::random::<u32>()),
            ),
            ("INTACT_DEPLOY_PORT".into(), port.to_string()),
        ],
    };
    let up = deployment.script("up", &[]);
    let logs = || {
        let mut all = String::new();
        for f in [
            "garage.log",
            "replica1.log",
            "replica2.log",
            "replica3.log",
            "nginx/logs/error.log",
        ] {
            all += &format!(
                "--- {f}\n{}\n",
                std::fs::read_to_string(dir.path().join("run").join(f)).unwrap_or_default()
            );
        }
        all
    };
    assert!(
        up.status.success(),
        "deploy/local/up: {}{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr),
        logs()
    );
    let lb = format!("http://127.0.0.1:{port}");
    let large = big(3);
    publish(
        &lb,
        "release",
        "1.0",
        &[("image.bin", &large), ("notes.txt", b"first")],
        dir.path(),
    );
    // Every replica serves it, and the load balancer does too.
    for replica in 1..=3 {
        let (status, body) = get(&format!(
            "http://127.0.0.1:{}/api/v1/repos/files/release/@v/1.0/image.bin",
            port + replica
        ));
        assert_eq!(status, 200, "replica {replica}");
        assert!(body == large, "replica {replica} serves the same bytes");
    }
    let (status, body) = get(&format!("{lb}/api/v1/repos/files/release/@v/1.0/notes.txt"));
    assert_eq!((status, body.as_slice()), (200, b"first".as_slice()));
    // Each replica's event log has the commit.
    for replica in 1..=3 {
        let (_, events) = get(&format!("http://127.0.0.1:{}/api/v1/events?after=0", port + replica));
        let events: Value = serde_json::from_slice(&events).expect("events json");
        assert!(
            events["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["name"] == "release" && e["kind"] == "committed")),
            "replica {replica}: {events}"
        );
    }
    // A second `up` is harmless: everything is already running.
    let again = deployment.script("up", &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let down = deployment.script("down", &["--purge"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let (status, _) = runtime().block_on(async {
        match client().get(format!("{lb}/healthz")).send().await {
            Ok(r) => (r.status().as_u16(), ()),
            Err(_) => (0, ()),
        }
    });
    assert_eq!(status, 0, "nothing listens after down");
}
