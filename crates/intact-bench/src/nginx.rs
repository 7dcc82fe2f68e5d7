//! The file-serving peer: nginx with a minimal configuration (2 workers, `sendfile on`, no
//! access log) serving a plain directory, run in the foreground as our child.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::memory::{children_of, status_kib};

pub struct Nginx {
    bin: PathBuf,
    child: Child,
    /// The prefix directory holding `nginx.conf`, its pid file and error log.
    prefix: PathBuf,
    pub base: String,
    pub version: String,
}

/// `nginx/1.22.1` from `nginx -v` (which prints to stderr).
fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            text.split_whitespace()
                .find(|w| w.starts_with("nginx/"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "nginx".to_owned())
        .replace('/', " ")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Whether this process runs as root (then nginx would drop its workers to `nobody`, who may
/// not read the hard-linked blob files, which are private to their owner).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(str::to_owned))
        .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

impl Nginx {
    /// Writes `<prefix>/nginx.conf` serving `root` and starts nginx on a free loopback port.
    pub fn start(bin: &Path, prefix: &Path, root: &Path) -> Result<Self> {
        let root = root.display();
        Self::start_with(
            bin,
            prefix,
            "",
            &format!("root {root};\n        location / {{ }}"),
            &root.to_string(),
        )
    }

    /// Starts nginx as a caching proxy of `upstream` (`http://host:port`): `proxy_cache` with
    /// `proxy_cache_lock on`, so one request per key goes upstream while the others wait for
    /// it to fill the cache.
    pub fn start_caching_proxy(bin: &Path, prefix: &Path, upstream: &str) -> Result<Self> {
        let cache = prefix.join("cache");
        let http = format!(
            "proxy_cache_path {} levels=1:2 keys_zone=cold:10m max_size=1g inactive=60m use_temp_path=off;\n    \
             proxy_temp_path tmp/proxy;\n",
            cache.display()
        );
        let server = format!(
            "location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_cache cold;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 120s;
            proxy_cache_lock_age 120s;
        }}"
        );
        Self::start_with(bin, prefix, &http, &server, &format!("a cache of {upstream}"))
    }

    /// Writes `<prefix>/nginx.conf` with `http_extra` in its `http` block and `server_body` in
    /// its one server, and starts nginx on a free loopback port.
    fn start_with(bin: &Path, prefix: &Path, http_extra: &str, server_body: &str, serving: &str) -> Result<Self> {
        std::fs::create_dir_all(prefix.join("tmp")).with_context(|| format!("creating {}", prefix.display()))?;
        let port = free_port()?;
        let user = if running_as_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 2;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path tmp/body;
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        {server_body}
    }}
}}
"
        );
        std::fs::write(prefix.join("nginx.conf"), conf).context("writing nginx.conf")?;
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .args(["-c", "nginx.conf", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                bail!("nginx exited with {status}; error.log:\n{log}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nginx did not listen on 127.0.0.1:{port} within 15 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let nginx = Self {
            bin: bin.to_owned(),
            child,
            prefix: prefix.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            version: version_of(bin),
        };
        crate::progress(format!(
            "{} (master pid {}) on {} serving {}",
            nginx.version,
            nginx.child.id(),
            nginx.base,
            serving
        ));
        Ok(nginx)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The largest peak RSS among the workers (the processes that serve requests), KiB.
    /// Every worker's peak, summed: the whole server's memory, at most.
    pub fn workers_peak_rss_total_kib(&self) -> u64 {
        children_of(self.child.id())
            .into_iter()
            .filter_map(|pid| status_kib(pid, "VmHWM"))
            .sum()
    }

    pub fn worker_peak_rss_kib(&self) -> u64 {
        children_of(self.child.id())
            .into_iter()
            .filter_map(|pid| status_kib(pid, "VmHWM"))
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A fast shutdown through the master, so the workers go with it; SIGKILL on the master
        // alone would leave them holding the port.
        let workers = children_of(self.child.id());
        let _ = Command::new(&self.bin)
            .arg("-p")
            .arg(&self.prefix)
            .arg("-e")
            .arg(self.prefix.join("error.log"))
            .args(["-c", "nginx.conf", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in workers {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}
