//! The `direct` entry of a Go proxy repo's upstream: module versions built from version
//! control by the go command itself (`GOPROXY=direct`), exactly as a developer's go command
//! would build them, so their hashes are the ones go.sum and the checksum database record.
//!
//! * `list` is `go list -m -versions -json M`; `@latest` and queries (`@v/main.info`, a
//!   commit hash) are `go list -m -json M@QUERY`; `.mod` and `.zip` are
//!   `go mod download -json M@VERSION`, read from the go command's module cache. What comes
//!   back goes through the same checks as any upstream's answer before it is committed.
//! * The go command runs with an environment of its own: `GOPROXY=direct`, `GOSUMDB=off`
//!   (intact checks sums itself, against the repo's `checksum_db`), its own module cache and
//!   home under the data dir, no terminal prompts, and only the credentials configured for it
//!   (a netrc file, a git config, the SSH agent's socket). The service's own environment is
//!   not passed on beyond proxies, CA settings and the SSH agent.
//! * Each run is bounded by the caller's fetch deadline (the process is killed when the fetch
//!   is abandoned), and at most [`MAX_RUNNING`] run at once per repo.
//! * Its module cache keeps git clones between fetches (the next version of a module costs an
//!   incremental fetch); the extracted tree and zip of a version are removed once the zip
//!   has been copied out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OnceCell, Semaphore};

use super::error::ProxyError;
use super::upstream::Asked;

/// At most this many go commands run at once for one repo (each may clone a repository).
pub const MAX_RUNNING: usize = 4;
/// The most of a go command's standard error kept for its error message.
const MAX_STDERR: u64 = 64 << 10;
/// The most of `go ... -json`'s standard output read (a `list` of many versions included).
const MAX_JSON: u64 = 64 << 20;

/// Environment variables intact sets for the go command itself; configuring them under
/// `[repo.direct] env` is refused (each names the setting to use instead, if any).
pub const RESERVED_ENV: &[(&str, &str)] = &[
    ("GOPROXY", "the repo's upstream list decides where modules come from"),
    ("GOSUMDB", "use the repo's checksum_db"),
    ("GONOSUMDB", "use the repo's no_sum"),
    ("GONOSUMCHECK", "use the repo's no_sum"),
    ("GOPRIVATE", "use the repo's no_sum and exclude"),
    ("GONOPROXY", "use the repo's upstream list"),
    ("GOINSECURE", "use direct.insecure"),
    ("GOFLAGS", "intact sets the flags its fetches need"),
    ("GOMODCACHE", "intact keeps the module cache under its data dir"),
    ("GOPATH", "intact keeps it under its data dir"),
    ("GOCACHE", "intact keeps it under its data dir"),
    ("GOENV", "the go command reads no go env file here"),
    ("GO111MODULE", "fetches run in module mode"),
    ("GOWORK", "fetches run outside any workspace"),
    (
        "GOTOOLCHAIN",
        "fetches use the configured go command, never a downloaded one",
    ),
    (
        "HOME",
        "the go command runs with a home of its own; use direct.netrc and direct.git_config",
    ),
    ("NETRC", "use direct.netrc"),
    ("GIT_CONFIG_GLOBAL", "use direct.git_config"),
    ("GIT_TERMINAL_PROMPT", "a fetch can never answer a prompt"),
    (
        "GIT_CONFIG_NOSYSTEM",
        "the system's git config is never read; use direct.git_config",
    ),
    ("LC_ALL", "intact reads the go command's messages in English"),
    ("LANGUAGE", "intact reads the go command's messages in English"),
];

/// Variables of the service's environment passed on to the go command when set: how to
/// reach the network (proxies, CAs) and the SSH agent. Nothing else leaks in.
const PASSED_ON: &[&str] = &[
    "PATH",
    "SSH_AUTH_SOCK",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "TMPDIR",
];

/// How a repo's `direct` entry runs the go command.
#[derive(Debug, Clone)]
pub struct DirectSettings {
    pub go: PathBuf,
    /// The repo's own directory for the go command's module cache, build cache and home.
    pub work_dir: PathBuf,
    pub netrc: Option<PathBuf>,
    pub git_config: Option<PathBuf>,
    pub insecure: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// A repo's `direct` fetcher.
#[derive(Debug)]
pub struct Direct {
    settings: DirectSettings,
    prepared: OnceCell<()>,
    running: Semaphore,
}

/// What `go list -m -json` and `go mod download -json` print (the fields used here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GoModule {
    #[serde(default)]
    version: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    go_mod: Option<PathBuf>,
    #[serde(default)]
    zip: Option<PathBuf>,
    #[serde(default)]
    dir: Option<PathBuf>,
    /// `go mod download -json` reports a failure here (and exits non-zero).
    #[serde(default)]
    error: Option<String>,
}

impl Direct {
    pub fn new(settings: DirectSettings) -> Self {
        Self {
            settings,
            prepared: OnceCell::new(),
            running: Semaphore::new(MAX_RUNNING),
        }
    }

    fn modcache(&self) -> PathBuf {
        self.settings.work_dir.join("modcache")
    }

    fn home(&self) -> PathBuf {
        self.settings.work_dir.join("home")
    }

    /// Creates the work directories, and the home's `.gitconfig` (including the configured
    /// one) and `.netrc` (a link to the configured file, so a rotated file is read as is).
    async fn prepare(&self) -> Result<(), ProxyError> {
        self.prepared
            .get_or_try_init(|| async {
                let work = &self.settings.work_dir;
                let home = self.home();
                for dir in [
                    self.modcache(),
                    work.join("gopath"),
                    work.join("gocache"),
                    work.join("cwd"),
                    home.clone(),
                ] {
                    tokio::fs::create_dir_all(&dir)
                        .await
                        .map_err(|e| ProxyError::Internal(format!("creating {}: {e}", dir.display())))?;
                }
                let gitconfig = match &self.settings.git_config {
                    // Quoted as git config values are: backslashes and quotes escaped.
                    Some(path) => format!(
                        "[include]\n\tpath = \"{}\"\n",
                        path.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
                    ),
                    None => String::new(),
                };
                write_replacing(&home.join(".gitconfig"), gitconfig.as_bytes()).await?;
                let link = home.join(".netrc");
                match tokio::fs::remove_file(&link).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ProxyError::Internal(format!("removing {}: {e}", link.display()))),
                }
                if let Some(netrc) = &self.settings.netrc {
                    tokio::fs::symlink(netrc, &link)
                        .await
                        .map_err(|e| ProxyError::Internal(format!("linking {}: {e}", link.display())))?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let work = &self.settings.work_dir;
        let mut cmd = tokio::process::Command::new(&self.settings.go);
        cmd.args(args)
            .current_dir(work.join("cwd"))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so an abandoned fetch kills git and ssh too.
            .process_group(0)
            .kill_on_drop(true);
        for name in PASSED_ON {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        }
        cmd.env("HOME", self.home())
            .env("GOPROXY", "direct")
            .env("GOSUMDB", "off")
            .env("GOFLAGS", "-modcacherw")
            .env("GO111MODULE", "on")
            .env("GOENV", "off")
            .env("GOWORK", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOMODCACHE", self.modcache())
            .env("GOPATH", work.join("gopath"))
            .env("GOCACHE", work.join("gocache"))
            .env("GOINSECURE", self.settings.insecure.join(","))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GCM_INTERACTIVE", "never")
            // A git transfer slower than 1 KiB/s for a minute is given up, not waited on.
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1024")
            .env("GIT_HTTP_LOW_SPEED_TIME", "60")
            .env("LC_ALL", "C");
        if self.settings.netrc.is_some() {
            cmd.env("NETRC", self.home().join(".netrc"));
        }
        cmd.envs(&self.settings.env);
        cmd
    }

    /// Runs `go ARGS` and parses its JSON answer. A failure is "not found" unless the go
    /// command could not reach the repository at all (then the upstream failed).
    async fn run(&self, args: &[&str], what: &str) -> Result<GoModule, ProxyError> {
        self.prepare().await?;
        let _turn = self
            .running
            .acquire()
            .await
            .map_err(|e| ProxyError::Internal(format!("direct fetch queue: {e}")))?;
        let mut child = self.command(args).spawn().map_err(|e| {
            tracing::error!(go = %self.settings.go.display(), error = %e, "could not start the go command for upstream direct");
            ProxyError::Internal(format!("the go command for upstream direct could not be started: {e}"))
        })?;
        let mut group = GroupKiller::new(child.id());
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ProxyError::Internal("the go command's output was not piped".into()));
        };
        let (out, err, status) = tokio::join!(
            read_capped(stdout, MAX_JSON),
            read_capped(stderr, MAX_STDERR),
            child.wait()
        );
        let status = status.map_err(|e| ProxyError::Internal(format!("waiting for the go command: {e}")))?;
        group.disarm();
        let (out, err) = (out?, err?);
        let parsed: Option<GoModule> = serde_json::from_slice(&out).ok();
        let reported = parsed.as_ref().and_then(|m| m.error.clone());
        if status.success() && reported.is_none() {
            return parsed.ok_or_else(|| {
                ProxyError::InvalidUpstream(format!(
                    "upstream direct: `go {}` printed no module ({} bytes of output)",
                    args.join(" "),
                    out.len()
                ))
            });
        }
        if status.code().is_none() {
            // Killed by a signal (out of memory, an operator): nothing was learnt about `what`.
            return Err(ProxyError::Upstream(format!(
                "upstream direct: the go command fetching {what} was killed ({status})"
            )));
        }
        let text = reported.unwrap_or_else(|| String::from_utf8_lossy(&err).into_owned());
        Err(self.failure(what, &text))
    }

    /// The go command's error as an answer: the work dir is not shown (its paths are this
    /// server's business). Only what the go command says does not exist is "not found"; any
    /// other failure (the repository unreachable, a full disk, a message not recognised) is
    /// the upstream's, never remembered as an answer.
    fn failure(&self, what: &str, text: &str) -> ProxyError {
        let text = self.hide_work_dir(text);
        let text = text
            .trim()
            .trim_start_matches("go: ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if is_not_found(&text) {
            ProxyError::NotFound(format!("not found: {text}"))
        } else {
            ProxyError::Upstream(format!("upstream direct could not fetch {what}: {text}"))
        }
    }

    fn hide_work_dir(&self, text: &str) -> String {
        text.replace(&self.settings.work_dir.display().to_string(), "$WORK")
    }

    /// Answers `asked` into memory (`list`, `@latest`, `.info`, `.mod`).
    pub async fn get_bytes(&self, asked: &Asked, cap: u64) -> Result<Vec<u8>, ProxyError> {
        let bytes = match asked {
            Asked::List { module } => {
                // Retracted versions stay listed, as a module proxy lists them.
                let m = self
                    .run(&["list", "-m", "-versions", "-retracted", "-json", module], module)
                    .await?;
                let mut list = String::new();
                for v in m.versions {
                    list.push_str(&v);
                    list.push('\n');
                }
                list.into_bytes()
            }
            Asked::Latest { module } => {
                let arg = format!("{module}@latest");
                info_json(&self.run(&["list", "-m", "-json", &arg], &arg).await?)?
            }
            Asked::VersionFile {
                module,
                version,
                extension,
            } if extension == "info" => {
                let arg = format!("{module}@{}", plain_query(module, version)?);
                info_json(&self.run(&["list", "-m", "-json", &arg], &arg).await?)?
            }
            Asked::VersionFile {
                module,
                version,
                extension,
            } if extension == "mod" => {
                // `go list` fetches the go.mod alone; `go mod download` would build the zip too.
                let arg = format!("{module}@{}", plain_query(module, version)?);
                let m = self.run(&["list", "-m", "-json", &arg], &arg).await?;
                if m.version != *version {
                    return Err(ProxyError::InvalidUpstream(format!(
                        "upstream direct: `go list -m {arg}` answered version {:?}",
                        m.version
                    )));
                }
                let path = m.go_mod.ok_or_else(|| no_file(module, version, "go.mod"))?;
                self.read_file_capped(&path, cap).await?
            }
            other => {
                return Err(ProxyError::Internal(format!(
                    "upstream direct cannot answer {other:?} into memory"
                )));
            }
        };
        if bytes.len() as u64 > cap {
            return Err(ProxyError::InvalidUpstream(format!(
                "upstream direct answered {asked:?} with more than the limit of {cap} bytes"
            )));
        }
        Ok(bytes)
    }

    /// Copies a version's zip into `out` (at most `cap` bytes); returns its size.
    pub async fn get_zip(&self, asked: &Asked, out: &mut tokio::fs::File, cap: u64) -> Result<u64, ProxyError> {
        let Asked::VersionFile {
            module,
            version,
            extension,
        } = asked
        else {
            return Err(ProxyError::Internal(format!(
                "upstream direct cannot download {asked:?}"
            )));
        };
        if extension != "zip" {
            return Err(ProxyError::Internal(format!(
                "upstream direct cannot download {asked:?}"
            )));
        }
        let m = self.download(module, version).await?;
        let copied = self.copy_zip(&m, module, version, out, cap).await;
        // The copy (or the failure) is all that is needed of the extracted tree and zip.
        self.forget(&m).await;
        copied
    }

    async fn copy_zip(
        &self,
        m: &GoModule,
        module: &str,
        version: &str,
        out: &mut tokio::fs::File,
        cap: u64,
    ) -> Result<u64, ProxyError> {
        let zip = m.zip.clone().ok_or_else(|| no_file(module, version, "zip"))?;
        let file = tokio::fs::File::open(&zip).await.map_err(|e| {
            ProxyError::Upstream(
                self.hide_work_dir(&format!("upstream direct: opening the zip of {module}@{version}: {e}")),
            )
        })?;
        let n = tokio::io::copy(&mut file.take(cap + 1), out)
            .await
            .map_err(|e| ProxyError::Internal(format!("copying the zip of {module}@{version}: {e}")))?;
        if n > cap {
            return Err(ProxyError::InvalidUpstream(format!(
                "upstream direct built a zip of {module}@{version} larger than the limit of {cap} bytes"
            )));
        }
        Ok(n)
    }

    async fn read_file_capped(&self, path: &Path, cap: u64) -> Result<Vec<u8>, ProxyError> {
        let shown = self.hide_work_dir(&path.display().to_string());
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ProxyError::Upstream(format!("upstream direct: opening {shown}: {e}")))?;
        let mut buf = Vec::new();
        file.take(cap + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| ProxyError::Upstream(format!("upstream direct: reading {shown}: {e}")))?;
        Ok(buf)
    }

    /// `go mod download -json M@V` for a canonical version; the answer must be that version.
    async fn download(&self, module: &str, version: &str) -> Result<GoModule, ProxyError> {
        let arg = format!("{module}@{}", plain_query(module, version)?);
        let m = self.run(&["mod", "download", "-json", &arg], &arg).await?;
        if m.version != version {
            return Err(ProxyError::InvalidUpstream(format!(
                "upstream direct: `go mod download {arg}` answered version {:?}",
                m.version
            )));
        }
        Ok(m)
    }

    /// Removes a version's extracted tree and zip from the module cache (the repository's
    /// clone stays for the next version). Only paths inside the cache are touched.
    async fn forget(&self, m: &GoModule) {
        let cache = self.modcache();
        if let Some(dir) = m.dir.as_ref().filter(|d| d.starts_with(&cache))
            && let Err(e) = tokio::fs::remove_dir_all(dir).await
        {
            tracing::debug!(dir = %dir.display(), error = %e, "could not remove an extracted module");
        }
        if let Some(zip) = m.zip.as_ref().filter(|z| z.starts_with(&cache)) {
            for path in [zip.clone(), zip.with_extension("ziphash")] {
                if let Err(e) = tokio::fs::remove_file(&path).await {
                    tracing::debug!(path = %path.display(), error = %e, "could not remove a module zip");
                }
            }
        }
    }
}

/// A `.info` document (`{"Version":..., "Time":...}`) from `go list -m -json`'s answer.
fn info_json(m: &GoModule) -> Result<Vec<u8>, ProxyError> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Info<'a> {
        version: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        time: Option<&'a str>,
    }
    let info = Info {
        version: &m.version,
        time: m.time.as_deref(),
    };
    serde_json::to_vec(&info).map_err(|e| ProxyError::Internal(format!("writing .info: {e}")))
}

fn no_file(module: &str, version: &str, what: &str) -> ProxyError {
    ProxyError::InvalidUpstream(format!(
        "upstream direct: `go mod download` named no {what} file for {module}@{version}"
    ))
}

/// Whether the go command's error says that what was asked does not exist (or may not be
/// fetched with the credentials given): a definitive answer. A failure to reach the
/// repository is never one, even when its message also says "not found".
fn is_not_found(text: &str) -> bool {
    const OUTAGES: &[&str] = &[
        "connection refused",
        "connection timed out",
        "connection reset",
        "operation timed out",
        "timed out",
        "i/o timeout",
        "deadline exceeded",
        "network is unreachable",
        "no route to host",
        "failed to connect",
        "tls handshake",
        "ssl_error",
        "hung up unexpectedly",
        "early eof",
        "unexpected disconnect",
        "rpc failed",
        "returned error: 429",
        "returned error: 5",
        "429 too many requests",
        "500 internal server error",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "no space left on device",
        "permission denied",
        "cannot lock ref",
        ".lock': file exists",
        ".lock: file exists",
        "server misbehaving",
    ];
    const NOT_FOUND: &[&str] = &[
        "unknown revision",
        "invalid version",
        "no matching versions",
        "not found",
        "does not exist",
        "unrecognized import path",
        "terminal prompts disabled",
        "authentication failed",
        "malformed module path",
        "invalid module path",
        "does not contain package",
        "disallowed version string",
        "no such host",
        "could not resolve host",
        "module declares its path as",
        "missing go.sum entry",
    ];
    let lower = text.to_ascii_lowercase();
    !OUTAGES.iter().any(|o| lower.contains(o)) && NOT_FOUND.iter().any(|n| lower.contains(n))
}

/// A version or query as handed to the go command: Go's version characters, a branch's `/`
/// excepted (never in a proxy request), and never starting with `-`. What the version
/// control tools would read as an option or something else never reaches them.
fn plain_query<'a>(module: &str, query: &'a str) -> Result<&'a str, ProxyError> {
    let plain = !query.is_empty()
        && !query.starts_with('-')
        && query
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if plain {
        Ok(query)
    } else {
        Err(ProxyError::NotFound(format!(
            "not found: {module}@{query}: upstream direct takes versions, branches, tags and commit hashes of [A-Za-z0-9._+-] only"
        )))
    }
}

/// Kills a go command's whole process group (git, ssh...) when its fetch is abandoned:
/// dropped before [`GroupKiller::disarm`], which is called once the go command has exited.
struct GroupKiller(Option<rustix::process::Pid>);

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        Self(
            pid.and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw),
        )
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // The group is the go command's own (process_group(0)); it may be gone already.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

async fn read_capped(reader: impl AsyncRead + Unpin, cap: u64) -> Result<Vec<u8>, ProxyError> {
    let mut buf = Vec::new();
    let mut limited = reader.take(cap);
    limited
        .read_to_end(&mut buf)
        .await
        .map_err(|e| ProxyError::Internal(format!("reading the go command's output: {e}")))?;
    // Drain the rest so the process never blocks on a full pipe.
    let mut rest = limited.into_inner();
    let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
    Ok(buf)
}

/// Writes `bytes` to `path` through a temp file and a rename.
async fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), ProxyError> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(|e| ProxyError::Internal(format!("writing {}: {e}", tmp.display())))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| ProxyError::Internal(format!("renaming {}: {e}", tmp.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_does_not_exist_is_not_found() {
        for outage in [
            "git ls-remote -q origin: fatal: unable to access 'https://h/': Failed to connect to h port 443: Connection refused",
            "unrecognized import path \"h/m\": https fetch: Get \"https://h/m?go-get=1\": dial tcp 10.0.0.1:443: i/o timeout",
            "The requested URL returned error: 503",
            "The requested URL returned error: 429",
            "fatal: early EOF",
            "write /x/cache/vcs/ab/objects: no space left on device",
            "error: cannot lock ref 'refs/tags/v1': Unable to create '/x/shallow.lock': File exists.",
            "",
            "something nobody has seen before",
        ] {
            assert!(!is_not_found(outage), "{outage}");
        }
        for not_found in [
            "example.test/m@v1.9.9: invalid version: unknown revision v1.9.9",
            "fatal: could not read Username for 'http://example.test': terminal prompts disabled",
            "unrecognized import path \"example.test/x\": reading http://example.test/x?go-get=1: 404 Not Found",
            "remote: Repository not found.",
            "example.test/m@latest: no matching versions for query \"latest\"",
        ] {
            assert!(is_not_found(not_found), "{not_found}");
        }
    }

    #[test]
    fn queries_reach_the_go_command_as_plain_words() {
        for ok in [
            "v1.0.0",
            "main",
            "4f1c2a9b7e3d",
            "v2.0.0+incompatible",
            "release-1.x",
            "v1.2.3-rc.1",
        ] {
            assert_eq!(plain_query("m", ok).ok(), Some(ok));
        }
        for bad in [
            "-x",
            "--upload-pack=evil",
            "a b",
            "a@b",
            "$x",
            "a=b",
            "a,b",
            "feature/x",
            "",
        ] {
            assert!(plain_query("m", bad).expect_err(bad).is_not_found(), "{bad}");
        }
    }

    /// A fetch abandoned at its deadline must not leave git (or ssh) running: they would hold
    /// git's lock files in the module cache and fail every later fetch of the module.
    #[tokio::test]
    async fn an_abandoned_run_kills_the_go_commands_children_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("child.pid");
        let go = dir.path().join("fake-go");
        std::fs::write(
            &go,
            format!("#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n", pid_file.display()),
        )
        .expect("write");
        std::fs::set_permissions(&go, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let direct = Direct::new(DirectSettings {
            go,
            work_dir: dir.path().join("work"),
            netrc: None,
            git_config: None,
            insecure: Vec::new(),
            env: BTreeMap::new(),
        });
        let abandoned = tokio::time::timeout(std::time::Duration::from_secs(1), direct.run(&["list"], "m")).await;
        assert!(abandoned.is_err(), "the fake go command never ends by itself");
        let pid = std::fs::read_to_string(&pid_file).expect("the child wrote its pid");
        let stat = format!("/proc/{}/stat", pid.trim());
        let gone = || {
            // Gone, or a zombie waiting for a reaper: either way no longer running.
            std::fs::read_to_string(&stat)
                .map_or(true, |s| s.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')))
        };
        for _ in 0..100 {
            if gone() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the go command's child {} outlived the abandoned run", pid.trim());
    }

    #[test]
    fn info_documents_carry_version_and_time_only() {
        let m: GoModule = serde_json::from_str(
            r#"{"Path":"example.test/m","Version":"v1.0.1-0.20261129105340-cf2c8312a6c0","Query":"main","Time":"2026-11-29T10:53:40Z","Origin":{"VCS":"git"}}"#,
        )
        .expect("parses");
        assert_eq!(
            String::from_utf8(info_json(&m).expect("info")).expect("utf-8"),
            r#"{"Version":"v1.0.1-0.20261129105340-cf2c8312a6c0","Time":"2026-11-29T10:53:40Z"}"#
        );
    }
}
