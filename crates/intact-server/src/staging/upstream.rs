//! Where builds come from: a directory tree over HTTP(S), a local directory (`file://`), or an
//! S3-compatible bucket (`s3://bucket/prefix`). Each can list the files of a directory, tell a
//! file's size, and stream a file. Paths handed in are relative, built from a validated `Name`
//! and `FilePath`; credentials never appear in what is shown or logged.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use super::error::StageError;
use super::listing::{parse_index, percent_encode};
use crate::config::RepoConfig;

/// Largest directory index page read (a listing is small; anything bigger is refused).
const MAX_INDEX_BYTES: usize = 16 * 1024 * 1024;

/// An open upstream file.
pub(crate) struct Download {
    /// From `Content-Length`, the file's metadata or the object's size.
    pub size: Option<u64>,
    pub body: Pin<Box<dyn AsyncRead + Send>>,
}

pub(crate) enum Upstream {
    Http {
        /// Without a trailing `/`.
        base: String,
        client: reqwest::Client,
        display: String,
    },
    File {
        root: PathBuf,
        display: String,
    },
    S3 {
        store: Arc<dyn ObjectStore>,
        /// Key prefix without leading or trailing `/` (may be empty).
        prefix: String,
        display: String,
    },
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display())
    }
}

/// An error with its chain of causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl Upstream {
    /// Builds the upstream of a staging repo from its configuration.
    pub fn from_config(repo: &RepoConfig) -> anyhow::Result<Self> {
        let n = &repo.name;
        let Some(url) = repo.upstream.as_deref().map(str::trim) else {
            bail!("repo {n}: a staging repo needs an upstream");
        };
        if url.starts_with("http://") || url.starts_with("https://") {
            let parsed = reqwest::Url::parse(url).with_context(|| format!("repo {n}: upstream is not a valid URL"))?;
            let mut shown = parsed.clone();
            if !shown.username().is_empty() || shown.password().is_some() {
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
            }
            // One TLS provider for the process; a no-op when the binary installed it already.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .user_agent(concat!("intact/", env!("CARGO_PKG_VERSION"), " (staging)"))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .build()
                .with_context(|| format!("repo {n}: building the HTTP client"))?;
            Ok(Self::Http {
                base: url.trim_end_matches('/').to_owned(),
                client,
                display: shown.as_str().trim_end_matches('/').to_owned(),
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            let root = PathBuf::from(super::listing::percent_decode(path).unwrap_or_else(|| path.to_owned()));
            if !root.is_absolute() {
                bail!("repo {n}: a file:// upstream needs an absolute path (file:///dir)");
            }
            Ok(Self::File {
                root,
                display: url.trim_end_matches('/').to_owned(),
            })
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("repo {n}: an s3:// upstream needs a bucket (s3://bucket/prefix)");
            }
            let prefix = prefix.trim_matches('/').to_owned();
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(e) = &repo.s3_endpoint {
                b = b.with_endpoint(e.as_str());
            }
            if let Some(r) = &repo.s3_region {
                b = b.with_region(r.as_str());
            }
            if repo.s3_allow_http {
                b = b.with_allow_http(true);
            }
            let _ = rustls::crypto::ring::default_provider().install_default();
            // The builder's error never includes the secret key.
            let store = b
                .build()
                .with_context(|| format!("repo {n}: configuring S3 upstream"))?;
            Ok(Self::S3 {
                store: Arc::new(store),
                display: if prefix.is_empty() {
                    format!("s3://{bucket}")
                } else {
                    format!("s3://{bucket}/{prefix}")
                },
                prefix,
            })
        } else {
            bail!("repo {n}: upstream {url:?} must start with http://, https://, file:// or s3://")
        }
    }

    /// The upstream as shown in messages and metadata (no credentials).
    pub fn display(&self) -> &str {
        match self {
            Self::Http { display, .. } | Self::File { display, .. } | Self::S3 { display, .. } => display,
        }
    }

    /// `rel` (a `/`-separated relative path) as shown in messages.
    pub fn show(&self, rel: &str) -> String {
        format!("{}/{rel}", self.display())
    }

    fn http_url(base: &str, rel: &str) -> String {
        let encoded: Vec<String> = rel.split('/').map(percent_encode).collect();
        format!("{base}/{}", encoded.join("/"))
    }

    fn local_path(root: &std::path::Path, rel: &str) -> PathBuf {
        // `rel` comes from a validated Name / FilePath: no `..`, no empty or absolute segments.
        rel.split('/').fold(root.to_path_buf(), |p, seg| p.join(seg))
    }

    fn s3_key(prefix: &str, rel: &str) -> object_store::path::Path {
        if prefix.is_empty() {
            object_store::path::Path::from(rel)
        } else {
            object_store::path::Path::from(format!("{prefix}/{rel}"))
        }
    }

    /// Names of the files directly in directory `dir`.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, StageError> {
        match self {
            Self::Http { base, client, .. } => {
                let url = format!("{}/", Self::http_url(base, dir));
                let shown = format!("{}/", self.show(dir));
                let resp = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| StageError::Upstream(format!("listing {shown}: {}", chain(&e.without_url()))))?;
                let status = resp.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Err(StageError::not_found(format!("upstream directory {shown}")));
                }
                if !status.is_success() {
                    return Err(StageError::Upstream(format!(
                        "listing {shown}: upstream answered {status}"
                    )));
                }
                let mut body = Vec::new();
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream
                    .try_next()
                    .await
                    .map_err(|e| StageError::Upstream(format!("listing {shown}: {}", chain(&e.without_url()))))?
                {
                    if body.len() + chunk.len() > MAX_INDEX_BYTES {
                        return Err(StageError::Upstream(format!(
                            "listing {shown}: index page larger than {MAX_INDEX_BYTES} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(parse_index(&String::from_utf8_lossy(&body)))
            }
            Self::File { root, .. } => {
                let path = Self::local_path(root, dir);
                let shown = format!("{}/", self.show(dir));
                let mut rd = match tokio::fs::read_dir(&path).await {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(StageError::not_found(format!("upstream directory {shown}")));
                    }
                    Err(e) => return Err(StageError::Upstream(format!("listing {shown}: {e}"))),
                };
                let mut out = Vec::new();
                while let Some(entry) = rd
                    .next_entry()
                    .await
                    .map_err(|e| StageError::Upstream(format!("listing {shown}: {e}")))?
                {
                    // Follows symlinks: the upstream tree is the operator's.
                    let is_file = tokio::fs::metadata(entry.path()).await.is_ok_and(|m| m.is_file());
                    if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                        out.push(name.to_owned());
                    }
                }
                out.sort();
                Ok(out)
            }
            Self::S3 { store, prefix, .. } => {
                let shown = format!("{}/", self.show(dir));
                let key = Self::s3_key(prefix, dir);
                let listed = store
                    .list_with_delimiter(Some(&key))
                    .await
                    .map_err(|e| StageError::Upstream(format!("listing {shown}: {}", chain(&e))))?;
                if listed.objects.is_empty() && listed.common_prefixes.is_empty() {
                    return Err(StageError::not_found(format!("upstream directory {shown}")));
                }
                let mut out: Vec<String> = listed
                    .objects
                    .iter()
                    .filter_map(|o| o.location.filename().map(str::to_owned))
                    .collect();
                out.sort();
                Ok(out)
            }
        }
    }

    /// The size of file `rel`, when the upstream says (`NotFound` when it is not there).
    pub async fn size(&self, rel: &str) -> Result<Option<u64>, StageError> {
        let shown = self.show(rel);
        match self {
            Self::Http { base, client, .. } => {
                let resp = client
                    .head(Self::http_url(base, rel))
                    .send()
                    .await
                    .map_err(|e| StageError::Upstream(format!("HEAD {shown}: {}", chain(&e.without_url()))))?;
                match resp.status() {
                    reqwest::StatusCode::NOT_FOUND => Err(StageError::not_found(format!("upstream file {shown}"))),
                    // Some servers refuse HEAD; the size is then learnt from the download.
                    // The header itself: reqwest's content_length() is the (empty) body's size.
                    s if s.is_success() => Ok(resp
                        .headers()
                        .get(reqwest::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())),
                    _ => Ok(None),
                }
            }
            Self::File { root, .. } => match tokio::fs::metadata(Self::local_path(root, rel)).await {
                Ok(m) if m.is_file() => Ok(Some(m.len())),
                Ok(_) => Err(StageError::not_found(format!("upstream file {shown}"))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(StageError::not_found(format!("upstream file {shown}")))
                }
                Err(e) => Err(StageError::Upstream(format!("reading {shown}: {e}"))),
            },
            Self::S3 { store, prefix, .. } => match store.head(&Self::s3_key(prefix, rel)).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(StageError::not_found(format!("upstream file {shown}")))
                }
                Err(e) => Err(StageError::Upstream(format!("HEAD {shown}: {}", chain(&e)))),
            },
        }
    }

    /// Opens file `rel` for streaming.
    pub async fn open(&self, rel: &str) -> Result<Download, StageError> {
        let result = self.open_uncounted(rel).await;
        crate::observe::upstream_fetch(
            "staging",
            match &result {
                Ok(_) => crate::observe::FetchOutcome::Ok,
                Err(StageError::NotFound { .. }) => crate::observe::FetchOutcome::NotFound,
                Err(_) => crate::observe::FetchOutcome::Failed,
            },
        );
        result
    }

    async fn open_uncounted(&self, rel: &str) -> Result<Download, StageError> {
        let shown = self.show(rel);
        match self {
            Self::Http { base, client, .. } => {
                let resp = client
                    .get(Self::http_url(base, rel))
                    .send()
                    .await
                    .map_err(|e| StageError::Upstream(format!("GET {shown}: {}", chain(&e.without_url()))))?;
                let status = resp.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Err(StageError::not_found(format!("upstream file {shown}")));
                }
                if !status.is_success() {
                    return Err(StageError::Upstream(format!("GET {shown}: upstream answered {status}")));
                }
                let size = resp.content_length();
                let stream = resp
                    .bytes_stream()
                    .map_err(|e| std::io::Error::other(chain(&e.without_url())));
                Ok(Download {
                    size,
                    body: Box::pin(StreamReader::new(stream)),
                })
            }
            Self::File { root, .. } => {
                let path = Self::local_path(root, rel);
                let file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(StageError::not_found(format!("upstream file {shown}")));
                    }
                    Err(e) => return Err(StageError::Upstream(format!("opening {shown}: {e}"))),
                };
                let meta = file
                    .metadata()
                    .await
                    .map_err(|e| StageError::Upstream(format!("opening {shown}: {e}")))?;
                if !meta.is_file() {
                    return Err(StageError::not_found(format!("upstream file {shown}")));
                }
                Ok(Download {
                    size: Some(meta.len()),
                    body: Box::pin(file),
                })
            }
            Self::S3 { store, prefix, .. } => {
                let got = match store.get(&Self::s3_key(prefix, rel)).await {
                    Ok(g) => g,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(StageError::not_found(format!("upstream file {shown}")));
                    }
                    Err(e) => return Err(StageError::Upstream(format!("GET {shown}: {}", chain(&e)))),
                };
                let size = got.meta.size;
                let stream = got.into_stream().map_err(|e| std::io::Error::other(chain(&e)));
                Ok(Download {
                    size: Some(size),
                    body: Box::pin(StreamReader::new(stream)),
                })
            }
        }
    }
}
