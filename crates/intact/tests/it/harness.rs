//! Starts the real `intact` binary as a child process and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_intact");

/// The server binary `Server` starts: `BIN`, or `$INTACT_SERVER_BIN` (a long full-size run
/// can pin a copy of the build while the workspace goes on being rebuilt).
fn server_bin() -> std::ffi::OsString {
    std::env::var_os("INTACT_SERVER_BIN").unwrap_or_else(|| BIN.into())
}

pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `intact serve` on an ephemeral port over `data_dir`, with an optional TOML
    /// config, and waits for its "listening" line.
    pub fn start(data_dir: &Path, config: Option<&str>, extra: &[&str]) -> Server {
        Self::start_beside(data_dir, data_dir, config, extra)
    }

    /// `start`, with the log and config at `side.log` and `side.toml` (for a data dir whose
    /// filesystem must hold nothing else, like the power-loss suite's).
    pub fn start_beside(data_dir: &Path, side: &Path, config: Option<&str>, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, side, config, extra, &[])
    }

    /// `start_beside`, with extra environment for the server (e.g. S3 credentials).
    pub fn start_with_env(
        data_dir: &Path,
        side: &Path,
        config: Option<&str>,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Server {
        let mut cmd = Command::new(server_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir);
        if let Some(text) = config {
            let path = side.with_extension("toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        cmd.args(extra);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(side.with_extension("log"))
            .expect("log file");
        cmd.stdout(Stdio::piped()).stderr(log);
        if !env.iter().any(|(k, _)| k == "INTACT_LOG") {
            cmd.env("INTACT_LOG", "info");
        }
        let mut child = cmd.spawn().expect("spawn intact");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(side.with_extension("log")).unwrap_or_default();
                panic!("intact did not start; log:\n{log}");
            }
        };
        // "intact listening on http://127.0.0.1:PORT (...)", or https:// with `[tls]`.
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server {
            child,
            base: url.to_owned(),
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown hooks, no flushing, like a power cut for the process.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; its exit status, or
    /// `None` if it was still running (it is killed then).
    pub fn terminate(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident set size of the server so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `intact` CLI against the server at `base`, apart from the machine's own CLI
/// settings (no `INTACT_TOKEN` from the environment, no CLI config file), sending `token` when
/// given, with `env` added; (succeeded, stdout, stderr).
pub fn cli(base: &str, token: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("INTACT_SERVER", base)
        .env_remove("INTACT_TOKEN")
        .env("INTACT_CLI_CONFIG", "/nonexistent/intact-cli.toml")
        .envs(env.iter().copied());
    if let Some(t) = token {
        cmd.env("INTACT_TOKEN", t);
    }
    let out = cmd.output().expect("run intact");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `f` every 100 ms until it holds; fails the test naming `what` once `within` passed.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened within {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Deterministic pseudo-random bytes (xorshift), cheap to regenerate for checking.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// FNV-1a, for deriving seeds from names.
pub fn seed_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Blob files currently on disk (by digest hex).
pub fn blob_files(data_dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let root = data_dir.join("blobs").join("sha256");
    for shard in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            out.insert(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// How big the reliability suites run: `ci` (the default, minutes in all) or `full`
/// (`./scripts/test --full`, which sets `INTACT_SUITE_SIZE=full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteSize {
    Ci,
    Full,
}

pub fn suite_size() -> SuiteSize {
    match std::env::var("INTACT_SUITE_SIZE").as_deref() {
        Ok("full") => SuiteSize::Full,
        _ => SuiteSize::Ci,
    }
}

/// Picks the CI or the full-size figure of a suite parameter.
pub fn sized<T>(ci: T, full: T) -> T {
    match suite_size() {
        SuiteSize::Ci => ci,
        SuiteSize::Full => full,
    }
}

/// Records what a reliability suite tried and what held: printed, and appended as one JSON
/// line to `$INTACT_RELIABILITY_REPORT` when set (`scripts/test` prints the collected lines
/// at the end, since cargo hides the output of passing tests).
pub fn report(suite: &str, figures: serde_json::Value) {
    let line =
        serde_json::json!({"suite": suite, "size": format!("{:?}", suite_size()).to_lowercase(), "figures": figures});
    println!("RELIABILITY {line}");
    if let Ok(path) = std::env::var("INTACT_RELIABILITY_REPORT")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}
