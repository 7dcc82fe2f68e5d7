//! A small HTTP client for the artifact API: JSON errors become readable messages.

use std::path::Path;

use anyhow::{Context, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Certificate, Response, StatusCode};
use serde_json::Value;

use crate::ServerArgs;

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    /// A client for the server `args` names: https URLs verified against the system's trusted
    /// roots (reqwest's platform verifier) plus the CAs in `args.ca_cert` when given, sending
    /// its token (from `--token`, `INTACT_TOKEN` or the CLI config file) with every request.
    pub fn new(args: &ServerArgs) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().user_agent(concat!("intact/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca_cert {
            builder = builder.tls_certs_merge(read_ca_certs(path)?);
        }
        if let Some(token) = token(args)? {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value (visible ASCII only)")?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
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

/// The token to send: `--token`/`INTACT_TOKEN`, else `token` in the CLI config file.
fn token(args: &crate::ServerArgs) -> anyhow::Result<Option<String>> {
    if let Some(t) = &args.token {
        return Ok(Some(t.trim().to_owned()).filter(|t| !t.is_empty()));
    }
    let Some(path) = cli_config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CliConfig {
        token: Option<String>,
    }
    let config: CliConfig = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    Ok(config.token)
}

/// `INTACT_CLI_CONFIG`, else `$XDG_CONFIG_HOME/intact/config.toml`, else
/// `~/.config/intact/config.toml`.
fn cli_config_path() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("INTACT_CLI_CONFIG") {
        return Some(p.into());
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => std::path::PathBuf::from(x),
        _ => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("intact").join("config.toml"))
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

/// What the CLI percent-encodes in the paths and query values it builds: everything but
/// RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) and the `/` between segments.
/// Non-ASCII goes as its UTF-8 bytes. `+` is encoded too: in a query value a literal `+`
/// reads as a space (Go's `+incompatible` versions).
pub const URL_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes each `/`-separated segment of a validated name or path for a URL (the `/`s
/// stay: they separate the segments the server's routes expect).
pub fn encode_path(p: &str) -> String {
    utf8_percent_encode(p, URL_ENCODED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `encode_path` has always sent (before it used `percent-encoding`): unreserved
    /// characters and the `/`s as they are, everything else as uppercase `%XX` of its UTF-8.
    #[test]
    fn paths_encode_everything_but_unreserved_characters_and_slashes() {
        for (raw, encoded) in [
            ("a b", "a%20b"),
            ("100%", "100%25"),
            ("x#y", "x%23y"),
            ("what?", "what%3F"),
            ("1.0+build", "1.0%2Bbuild"),
            ("user@host", "user%40host"),
            ("naïve/日本", "na%C3%AFve/%E6%97%A5%E6%9C%AC"),
            ("&=;,", "%26%3D%3B%2C"),
            ("renders/shot_010/comp-v2.1~x", "renders/shot_010/comp-v2.1~x"),
            ("a//b/", "a//b/"),
        ] {
            assert_eq!(encode_path(raw), encoded, "{raw:?}");
        }
    }
}
