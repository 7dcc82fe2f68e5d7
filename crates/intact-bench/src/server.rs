//! The real `intact serve` as a child process on an ephemeral loopback port, as a user runs it
//! (default configuration, release build), plus its memory figures from `/proc`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::Ctx;
use crate::memory::status_kib;

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`, from the server's own "listening on" line.
    pub base: String,
}

/// `[limits]` with request rates so high they never refuse (the peers limit nothing, and a
/// load generator on loopback is one address), yet checked on every request as on any
/// server: the rate limiter's cost stays in the figures. Every other setting is the default.
pub const UNREFUSED_RATES: &str = "[limits]\nrate_per_address = { per_second = 1000000000, burst = 1000000000 }\nrate_per_token = { per_second = 1000000000, burst = 1000000000 }\n\n";

impl Server {
    /// Starts `intact serve` over `data_dir` (the default configuration, the embedded catalog
    /// and blob files, but for [`UNREFUSED_RATES`]) and waits for its "listening on" line.
    /// Its log goes to `<work>/<label>.log`.
    pub fn start(ctx: &Ctx, data_dir: &Path, label: &str) -> Result<Self> {
        let config = ctx.work.join(format!("{label}.toml"));
        std::fs::write(&config, UNREFUSED_RATES).with_context(|| format!("writing {}", config.display()))?;
        Self::start_configured(ctx, data_dir, label, Some(&config), &[])
    }

    /// [`Server::start`] with a configuration file (`--config`) and extra environment (the
    /// object store's credentials), as a replica on PostgreSQL and S3 is run.
    pub fn start_configured(
        ctx: &Ctx,
        data_dir: &Path,
        label: &str,
        config: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log_path = ctx.work.join(format!("intact-{label}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(&ctx.intact_bin);
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        if std::env::var_os("INTACT_LOG").is_none() {
            // Like the nginx peer's `access_log off`: an access line per request cost 15-20%
            // of small-GET throughput at 60,000 requests a second (docs/performance.md).
            command.env("INTACT_LOG", "info,intact::access=off");
        }
        let mut child = command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", ctx.intact_bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("intact did not print its listening line; log:\n{log}");
            }
        };
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| anyhow!("unexpected first line from intact: {line:?}"))?;
        let server = Self {
            child,
            base: format!("http://{addr}"),
        };
        crate::progress(format!(
            "intact serve (pid {}) on {} over {}",
            server.pid(),
            server.base,
            data_dir.display()
        ));
        Ok(server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS").unwrap_or(0)
    }

    /// Peak resident memory since start (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM").unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The data dirs are scratch: no graceful shutdown needed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
