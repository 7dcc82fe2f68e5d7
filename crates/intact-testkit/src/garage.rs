//! Starts Garage (`garage server`) on loopback ports in a temp dir: one node, replication
//! factor 1, its layout applied, one bucket and one key allowed on it. Tests that need S3
//! share one Garage per test binary ([`shared_garage`]) and give each test its own key
//! prefix ([`Garage::prefix`]).
//!
//! A missing or broken `garage` binary fails the test with how to install it: tests that
//! need a service never skip.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngCore;

const INSTALL_HINT: &str = "install it with `cargo install garage --locked` (about 10 minutes on 2 cores; \
     ./scripts/test does it when missing), or point GARAGE_BIN at a garage binary";

/// The region Garage is configured with (clients must sign for it).
pub const REGION: &str = "garage";

/// A running Garage and what a client needs to reach its bucket.
#[derive(Debug)]
pub struct Garage {
    /// `http://127.0.0.1:<port>`, the S3 API.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    child: Child,
    /// Keeps the watchdog's stdin open: when this process ends (even by SIGKILL) the pipe
    /// closes and the watchdog kills Garage.
    lifeline: Option<ChildStdin>,
    next_prefix: AtomicU64,
    dir: tempfile::TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        // Closing the lifeline makes the watchdog kill Garage and exit.
        drop(self.lifeline.take());
        let _ = self.child.wait();
    }
}

/// One Garage for the whole test binary, started on first use. Panics (failing the test)
/// when Garage cannot be started, saying why and how to install it.
pub fn shared_garage() -> &'static Garage {
    static SHARED: OnceLock<Garage> = OnceLock::new();
    SHARED.get_or_init(|| Garage::start().unwrap_or_else(|e| panic!("{e}")))
}

/// The garage binary: `GARAGE_BIN`, else `~/.cargo/bin/garage`, else `garage` on the PATH.
fn binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("GARAGE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let bin = Path::new(&home).join(".cargo/bin/garage");
        if bin.is_file() {
            return Ok(bin);
        }
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("garage"))
        .find(|bin| bin.is_file());
    on_path.ok_or_else(|| format!("the garage binary was not found (GARAGE_BIN, ~/.cargo/bin, PATH): {INSTALL_HINT}"))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Garage {
    /// Starts a Garage of its own (most tests want [`shared_garage`]).
    pub fn start() -> Result<Self, String> {
        let bin = binary()?;
        let dir = tempfile::tempdir().map_err(|e| format!("creating Garage's temp dir: {e}"))?;
        let (s3, rpc, admin) = (free_port()?, free_port()?, free_port()?);
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                root = dir.path().display(),
                secret = random_hex(32),
            ),
        )
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log =
            std::fs::File::create(dir.path().join("garage.log")).map_err(|e| format!("creating Garage's log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("creating Garage's log: {e}"))?;
        // `sh` runs Garage and kills it once its stdin (our end of a pipe) closes: when the
        // test process exits, however it exits.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -c "$1" server & pid=$!; read _ignored; kill $pid; wait $pid"#)
            .arg(&bin)
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("starting {}: {e}: {INSTALL_HINT}", bin.display()))?;
        let lifeline = child.stdin.take();
        let mut garage = Self {
            endpoint: format!("http://127.0.0.1:{s3}"),
            region: REGION.into(),
            bucket: "intact-test".into(),
            access_key_id: format!("GK{}", random_hex(12)),
            secret_access_key: random_hex(32),
            child,
            lifeline,
            next_prefix: AtomicU64::new(0),
            dir,
        };
        garage.set_up(&bin, &config).map_err(|e| {
            let mut log = String::new();
            let _ =
                std::fs::File::open(garage.dir.path().join("garage.log")).and_then(|mut f| f.read_to_string(&mut log));
            format!(
                "setting up Garage ({}) failed: {e}\nGarage's log:\n{log}\n{INSTALL_HINT}",
                bin.display()
            )
        })?;
        Ok(garage)
    }

    /// Waits for the node, applies a one-node layout, creates the bucket and key.
    fn set_up(&mut self, bin: &Path, config: &Path) -> Result<(), String> {
        let cli = |args: &[&str]| -> Result<String, String> {
            let out = Command::new(bin)
                .arg("-c")
                .arg(config)
                .args(args)
                .output()
                .map_err(|e| format!("running garage {}: {e}", args.join(" ")))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(format!(
                    "garage {} failed ({}): {}{}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let node = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("garage exited at start ({status})"));
            }
            match cli(&["status"]).and_then(|_| cli(&["node", "id", "-q"])) {
                Ok(id) => break id,
                Err(e) if Instant::now() > deadline => return Err(format!("garage did not start within 60s: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let node = node.trim().split('@').next().unwrap_or_default().to_owned();
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        cli(&["layout", "apply", "--version", "1"])?;
        // The new layout takes a moment to be in force on the node.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = cli(&["bucket", "create", &self.bucket]) {
            if Instant::now() > deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "intact-test",
            &self.access_key_id,
            &self.secret_access_key,
        ])?;
        cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &self.bucket,
            "--key",
            &self.access_key_id,
        ])?;
        Ok(())
    }

    /// A key prefix no other caller of this Garage gets (one per test).
    pub fn prefix(&self, test: &str) -> String {
        let n = self.next_prefix.fetch_add(1, Ordering::Relaxed);
        format!("{test}-{}-{n}", std::process::id())
    }
}
