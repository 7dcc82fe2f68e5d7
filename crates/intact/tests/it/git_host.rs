//! A git host on loopback for the `direct` upstream tests: bare repositories served by the real
//! `git http-backend` (smart HTTP), plus the `?go-get=1` pages the go command reads to find
//! them, all under one made-up host name. It is reached as an HTTP forward proxy
//! (`HTTP_PROXY=http://127.0.0.1:PORT`), so module paths look like real ones
//! (`example.test/pub`) without DNS or a privileged port. Repositories whose name starts with
//! `private` need HTTP basic credentials for their git traffic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The host name every module path starts with.
pub const HOST: &str = "example.test";
/// The credentials private repositories want, and their `Authorization` header.
pub const USER: &str = "intact";
pub const PASSWORD: &str = "s3cret";
const BASIC: &str = "Basic aW50YWN0OnMzY3JldA=="; // base64("intact:s3cret")

pub struct GitHost {
    /// `http://127.0.0.1:PORT`: the proxy URL to give the go command.
    pub proxy: String,
    git_requests: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl GitHost {
    /// Serves the bare repositories `{root}/{name}.git`.
    pub fn start(root: PathBuf) -> GitHost {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let proxy = format!("http://{}", listener.local_addr().expect("addr"));
        let git_requests = Arc::new(AtomicUsize::new(0));
        let counter = git_requests.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(move |req: Request<Body>| {
                    let (root, counter) = (root.clone(), counter.clone());
                    async move { answer(&root, &counter, req).await }
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        GitHost {
            proxy,
            git_requests,
            _stop: stop_tx,
        }
    }

    /// How many git requests (ref advertisements and fetches) it has answered.
    pub fn git_requests(&self) -> usize {
        self.git_requests.load(Ordering::SeqCst)
    }
}

async fn answer(root: &Path, counter: &AtomicUsize, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    // HTTPS is tunnelled with CONNECT: refused, so the go command falls back to plain HTTP
    // (the module paths are GOINSECURE) and git is only ever given http:// URLs.
    if parts.method == Method::CONNECT {
        return (StatusCode::FORBIDDEN, "no tunnels here").into_response();
    }
    let uri = parts.uri.clone();
    if uri.host() != Some(HOST) {
        return (StatusCode::BAD_GATEWAY, format!("this proxy only knows {HOST}")).into_response();
    }
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    if query == "go-get=1" {
        let name = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if name.is_empty() || !root.join(format!("{name}.git")).is_dir() {
            return (StatusCode::NOT_FOUND, "no such repository").into_response();
        }
        let page = format!(
            "<!DOCTYPE html><html><head><meta name=\"go-import\" content=\"{HOST}/{name} git http://{HOST}/git/{name}.git\"></head><body></body></html>"
        );
        return ([(header::CONTENT_TYPE, "text/html")], page).into_response();
    }
    let Some(rest) = path.strip_prefix("/git/") else {
        return (StatusCode::NOT_FOUND, "not a repository path").into_response();
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == BASIC.as_bytes());
    if rest.starts_with("private") && !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "credentials needed",
        )
            .into_response();
    }
    let header_text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, encoding, protocol) = (
        header_text("content-type"),
        header_text("content-encoding"),
        header_text("git-protocol"),
    );
    let method = parts.method.as_str().to_owned();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let (root, rest) = (root.to_owned(), format!("/{rest}"));
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &rest)
            .env("QUERY_STRING", &query)
            .env("REQUEST_METHOD", &method)
            .env("CONTENT_TYPE", &content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", &encoding)
            .env("GIT_PROTOCOL", &protocol)
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("git http-backend");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &body));
        let out = child.wait_with_output().expect("git http-backend output");
        let _ = writer.join();
        out.stdout
    })
    .await
    .expect("cgi task");
    cgi_response(&out)
}

/// Turns a CGI answer (`Status:` and other headers, a blank line, the body) into a response.
fn cgi_response(out: &[u8]) -> Response {
    let split = out.windows(4).position(|w| w == b"\r\n\r\n");
    let Some(at) = split else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "git http-backend answered no headers",
        )
            .into_response();
    };
    let head = String::from_utf8_lossy(&out[..at]).into_owned();
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in head.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(Body::from(out[at + 4..].to_vec()))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// Runs git in `dir` with fixed identities and dates (so hashes and pseudo-versions are the
/// same on every run); returns its trimmed standard output.
pub fn git(dir: &Path, args: &[&str], date: &str) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "intact tests")
        .env("GIT_AUTHOR_EMAIL", "tests@example.test")
        .env("GIT_COMMITTER_NAME", "intact tests")
        .env("GIT_COMMITTER_EMAIL", "tests@example.test")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository being written: each `commit` replaces the work tree's files.
pub struct Repo {
    work: PathBuf,
    bare: PathBuf,
}

impl Repo {
    /// A new repository `name`, published as `{root}/{name}.git`.
    pub fn new(root: &Path, name: &str) -> Repo {
        let work = root.join("work").join(name);
        std::fs::create_dir_all(&work).expect("mkdir");
        git(&work, &["init", "-q", "-b", "main"], "2024-01-01T00:00:00Z");
        Repo {
            work,
            bare: root.join(format!("{name}.git")),
        }
    }

    /// Commits `files` (path, contents) as the whole tree at `date`; returns the commit hash.
    pub fn commit(&self, files: &[(&str, &str)], date: &str) -> String {
        for entry in std::fs::read_dir(&self.work).expect("read_dir") {
            let entry = entry.expect("entry");
            if entry.file_name() != ".git" {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).expect("rm");
                } else {
                    std::fs::remove_file(&p).expect("rm");
                }
            }
        }
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        }
        git(&self.work, &["add", "-A"], date);
        git(&self.work, &["commit", "-q", "-m", &format!("at {date}")], date);
        git(&self.work, &["rev-parse", "HEAD"], date)
    }

    pub fn tag(&self, tag: &str) {
        git(&self.work, &["tag", tag], "2024-01-01T00:00:00Z");
    }

    /// Publishes the repository (its branches and tags) to the bare copy the host serves.
    pub fn publish(&self) {
        if !self.bare.exists() {
            let bare = self.bare.to_string_lossy().into_owned();
            git(
                &self.work,
                &["init", "-q", "--bare", "-b", "main", &bare],
                "2024-01-01T00:00:00Z",
            );
        }
        let bare = self.bare.to_string_lossy().into_owned();
        git(
            &self.work,
            &[
                "push",
                "-q",
                "--force",
                &bare,
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
            "2024-01-01T00:00:00Z",
        );
    }
}
