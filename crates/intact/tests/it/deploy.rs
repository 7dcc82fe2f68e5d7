//! The deployment samples in `deploy/`, checked with the real binary: their configurations
//! pass `config check`, the systemd units are ones systemd reads without a complaint and keep
//! their sandbox, and the container image's contract (environment, user, entry point, health
//! check, first-token recipe) holds. No container runtime runs on the test machines, so the
//! image itself is not built here; what it runs is.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{self, BIN};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The sample configurations stay valid as the configuration evolves.
#[test]
fn the_deployment_samples_pass_config_check() {
    for sample in ["deploy/single/intact.toml", "deploy/systemd/intact.toml"] {
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(root().join(sample))
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The sample systemd units are ones systemd reads without a complaint (an unknown or
/// misspelt directive is only a warning to systemd, so any output fails), and the embedded
/// default's unit keeps its sandbox (`systemd-analyze security` rates its exposure, 0 to 10).
#[test]
fn the_sample_systemd_units_are_valid_and_sandboxed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let analyze = |args: &[&str], unit: &Path| {
        let out = Command::new("systemd-analyze")
            .args(args)
            .arg(unit)
            .output()
            .expect("systemd-analyze (Debian's systemd package; scripts/test installs it)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    for (sample, unit) in [
        ("deploy/single/intact.service", "intact-single.service"),
        ("deploy/systemd/intact.service", "intact-replica.service"),
    ] {
        let text = std::fs::read_to_string(root().join(sample)).expect("read unit");
        // systemd checks that the program exists: point it at the binary under test.
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/intact", BIN)).expect("write unit");
        let (ok, said) = analyze(&["verify"], &path);
        assert!(ok && said.trim().is_empty(), "{sample}: {said}");
    }
    let (_, said) = analyze(
        &["security", "--offline=true"],
        &dir.path().join("intact-single.service"),
    );
    let exposure: f64 = said
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for intact-single.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {said}"));
    assert!(
        exposure <= 2.0,
        "the unit's sandbox weakened (exposure {exposure}):\n{said}"
    );
}

/// What the Dockerfile sets up for the process it starts.
struct Image {
    /// `ENV` pairs.
    env: Vec<(String, String)>,
    /// `ENTRYPOINT` followed by `CMD`.
    command: Vec<String>,
    /// The `HEALTHCHECK`'s `CMD`.
    healthcheck: Vec<String>,
    /// The `--uid` the runtime stage's user is made with.
    uid: u32,
    /// The first-token recipe of the file's header (`docker exec intact ...`).
    first_token: Vec<String>,
}

/// The runtime stage's instructions (after the last `FROM`), with `\` continuations joined.
fn read_dockerfile() -> Image {
    let text = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).expect("Dockerfile");
    let first_token = text
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("docker exec intact "))
        .expect("a `docker exec intact ...` first-token recipe in the header")
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_owned())
        .collect();
    let joined = text.replace("\\\n", " ");
    let runtime = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a runtime stage");
    let instruction = |name: &str| -> Vec<&str> {
        runtime
            .lines()
            .filter_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .collect()
    };
    let json_array = |s: &str| -> Vec<String> {
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not a JSON array ({e}): {s}"))
    };
    let env = instruction("ENV")
        .into_iter()
        .flat_map(|l| l.split_whitespace())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair}"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let mut command = json_array(instruction("ENTRYPOINT")[0]);
    command.extend(json_array(instruction("CMD")[0]));
    let healthcheck = instruction("HEALTHCHECK")[0]
        .split_once("CMD ")
        .map(|(_, cmd)| json_array(cmd))
        .expect("HEALTHCHECK ... CMD [...]");
    let uid = runtime
        .split_once("--uid ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("useradd --uid N");
    assert_eq!(
        instruction("USER"),
        ["intact"],
        "the server runs as the image's own user"
    );
    // The volume is made and given to that user before `USER` (the test does the same).
    let prepares_volume = instruction("RUN")
        .iter()
        .any(|r| r.contains("mkdir -p /data") && r.contains("chown intact:intact /data"));
    assert!(prepares_volume, "the runtime stage must create /data owned by intact");
    Image {
        env,
        command,
        healthcheck,
        uid,
        first_token,
    }
}

/// `args` run as the image runs them: `intact` is the binary under test, as `uid` when the
/// tests run as root (as in the image; otherwise as the tests' own unprivileged user, and the
/// ownership checks are skipped), with only the image's environment, port 7333 being `port`.
/// The group is the uid too (the image's `useradd --system` picks its own).
fn as_image_runs(image: &Image, args: &[String], port: u16, data: &Path, root: bool) -> Command {
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "intact" => BIN.to_owned(),
            "/data" => data.display().to_string(),
            _ => a.replace(":7333", &format!(":{port}")),
        })
        .collect();
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &image.uid.to_string(),
            "--regid",
            &image.uid.to_string(),
            "--clear-groups",
            "--",
        ]);
        c.args(&args);
        c
    } else {
        let mut c = Command::new(&args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.env_clear().env("PATH", "/usr/bin:/bin").env("INTACT_LOG", "info");
    for (k, v) in &image.env {
        let v = match k.as_str() {
            "INTACT_DATA_DIR" => data.display().to_string(),
            _ => v.replace(":7333", &format!(":{port}")),
        };
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn the_container_image_contract_holds_without_a_container_runtime() {
    let image = read_dockerfile();
    let env = |k: &str| image.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(env("INTACT_DATA_DIR"), Some("/data"), "data in the volume");
    assert_eq!(
        env("INTACT_LISTEN"),
        Some("0.0.0.0:7333"),
        "reachable from outside the container"
    );
    assert_eq!(image.command, ["intact", "serve"]);

    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .expect("id -u");
    let dir = tempfile::tempdir().expect("tempdir");
    // The volume: owned by the image's user, which can reach it through the scratch dir.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    if root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(&data, Some(image.uid), Some(image.uid)).expect("chown");
    }
    // The image's user must reach the binary under test (a checkout under /root would not do).
    let runs = as_image_runs(&image, &["intact".to_owned(), "--version".to_owned()], 0, &data, root)
        .output()
        .expect("run the binary as the image's user");
    assert!(
        runs.status.success(),
        "uid {} cannot run {BIN} (every directory above it must be searchable by others): {}",
        image.uid,
        String::from_utf8_lossy(&runs.stderr)
    );
    let health = |port: u16| {
        as_image_runs(&image, &image.healthcheck, port, &data, root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    // A port nothing listens on (taken and given back): the check must fail there.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    assert!(!health(unused), "healthy with nothing running");

    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Port 0 stands for the image's 7333 (the system picks a free one; the server's first
    // line says which), so parallel tests never race for a port.
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
    let mut server = Killed(
        as_image_runs(&image, &image.command, 0, &data, root)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the image's command"),
    );
    let server_log = || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let stdout = server.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the server never said where it listens: {}", server_log()));
    // "intact listening on http://0.0.0.0:PORT (...)"
    let port: u16 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://0.0.0.0:"))
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("not listening on all addresses as the image asks: {line}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !health(port) {
        if let Ok(Some(exit)) = server.0.try_wait() {
            panic!("the server exited ({exit}): {}", server_log());
        }
        assert!(std::time::Instant::now() < deadline, "never healthy: {}", server_log());
        std::thread::sleep(Duration::from_millis(200));
    }

    // The first token, made the way the header says while the server runs, works at once.
    let made = as_image_runs(&image, &image.first_token, port, &data, root)
        .output()
        .expect("first-token recipe");
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(
        made.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let secret = stdout.lines().last().expect("secret").trim().to_owned();
    let rt = harness::runtime();
    let status = rt.block_on(async {
        harness::client()
            .get(format!("http://127.0.0.1:{port}/api/v1/tokens"))
            .bearer_auth(&secret)
            .send()
            .await
            .expect("GET tokens")
            .status()
    });
    assert_eq!(
        status.as_u16(),
        200,
        "the new admin token is accepted: {}",
        server_log()
    );

    // Everything in the volume belongs to the image's user: a later start can open it all.
    if root {
        use std::os::unix::fs::MetadataExt;
        let mut stack = vec![data.clone()];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            assert_eq!(meta.uid(), image.uid, "{} is not the image user's", p.display());
            if meta.is_dir() {
                stack.extend(
                    std::fs::read_dir(&p)
                        .expect("readdir")
                        .map(|e| e.expect("entry").path()),
                );
            }
        }
    }

    drop(server);
    assert!(!health(port), "still healthy after the server is gone");
}
