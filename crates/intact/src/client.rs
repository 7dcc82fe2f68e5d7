//! A small HTTP client for the artifact API: JSON errors become readable messages.

use std::path::Path;

use anyhow::{Context, bail};
use reqwest::{Certificate, Response, StatusCode};
use serde_json::Value;

use crate::ServerArgs;

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    /// A client of `args.server`. https URLs are verified against the system's trusted roots
    /// (reqwest's platform verifier), plus the CAs in `args.ca_cert` when given.
    pub fn new(args: &ServerArgs) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().user_agent(concat!("intact/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca_cert {
            builder = builder.tls_certs_merge(read_ca_certs(path)?);
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Self {
            http,
            base: args.server.trim_end_matches('/').to_owned(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Turns a non-success response into an error carrying the server's message.
    pub async fn check(resp: Response) -> anyhow::Result<Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        bail!("server answered {status}: {}", message.trim())
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .with_context(|| format!("GET {}", self.url(path)))?;
        Ok(Self::check(resp).await?.json().await?)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {}", self.url(path)))?;
        let resp = Self::check(resp).await?;
        let status = resp.status();
        Ok((status, resp.json().await?))
    }
}

/// The certificates of a `--ca-cert` PEM file (one CA or a bundle).
fn read_ca_certs(path: &Path) -> anyhow::Result<Vec<Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("--ca-cert {}: cannot read it", path.display()))?;
    let certs = Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("--ca-cert {}: not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("--ca-cert {}: no `BEGIN CERTIFICATE` block in it", path.display());
    }
    Ok(certs)
}

/// Percent-encodes each `/`-separated segment of a validated name or path for a URL.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}
