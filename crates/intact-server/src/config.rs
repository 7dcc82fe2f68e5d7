//! The server's one typed configuration, read from TOML (`--config intact.toml`), with
//! `INTACT_...` environment overrides applied by the binary. With no file at all, the embedded
//! default: SQLite + local files under `./intact-data`, a hosted generic repo `files` and a Go
//! group `go` (hosted `go-private` + proxy `go-public` of proxy.golang.org).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use intact_core::RepoName;
use serde::{Deserialize, Serialize};

/// Top-level configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the embedded catalog (`catalog.db`) and blobs live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Which catalog to use (default: the embedded SQLite catalog in `data_dir`).
    #[serde(default)]
    pub catalog: CatalogSettings,
    /// Repositories. When the file declares none, the defaults are used.
    #[serde(default, rename = "repo")]
    pub repos: Vec<RepoConfig>,
    /// Transaction and garbage-collection tunables.
    #[serde(default)]
    pub store: StoreSettings,
    /// Connection handling.
    #[serde(default)]
    pub http: HttpSettings,
    /// Where blobs live (default: plain files in `data_dir`).
    #[serde(default)]
    pub blobs: BlobsConfig,
    /// Access control (docs/security.md).
    #[serde(default)]
    pub auth: AuthSettings,
    /// HTTPS: when set, the listener speaks TLS only, with this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// Request limits: sizes, rates, concurrent uploads.
    #[serde(default)]
    pub limits: crate::limits::LimitsSettings,
    /// Import by path (`POST /api/v1/transactions/{id}/import`): off unless roots are listed.
    #[serde(default)]
    pub import: ImportSettings,
}

/// `[import]`: which directories the server may take files from by path.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportSettings {
    /// Absolute paths of existing directories (`["/mnt/renders"]`). A file is imported only
    /// if its path, with every symlink and `..` resolved, lies inside one of them. Empty (the
    /// default): import by path is refused (403).
    pub allowed_roots: Vec<PathBuf>,
}

impl ImportSettings {
    /// The roots with every symlink and `..` resolved, as sources are checked against them.
    pub fn canonical_roots(&self) -> anyhow::Result<Vec<PathBuf>> {
        self.allowed_roots
            .iter()
            .map(|root| {
                std::fs::canonicalize(root)
                    .map_err(|e| anyhow::anyhow!("import.allowed_roots: {}: {e}", root.display()))
            })
            .collect()
    }
}

/// `[tls]`: the server's certificate. Both files are read at start-up and again on SIGHUP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: PathBuf,
}

/// `[auth]`: when tokens are required.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Require a token from the start. By default the server is open (every request may do
    /// everything) until the first token is created; from then on only what a repo's
    /// `anonymous_read` allows is anonymous.
    pub required: bool,
}

/// `[blobs]`: where blob bytes live. Without `url`, plain files under `data_dir`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobsConfig {
    /// `s3://bucket/prefix`: any S3-compatible store. Credentials come from the `AWS_*`
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The S3 API's URL (`http://garage:3900`); unset for AWS itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A local cache of this replica's own: `{ dir = "/var/cache/intact", max_size = "200GiB" }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_cache: Option<LocalCacheConfig>,
}

/// `[blobs] local_cache`: warm reads from local disk.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalCacheConfig {
    pub dir: PathBuf,
    /// Bytes (`1073741824`) or a size with a unit (`"200GiB"`, `"500MB"`).
    pub max_size: ByteSize,
}

/// A size in bytes, written as a number or as a string with a unit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    pub fn bytes(&self) -> anyhow::Result<u64> {
        let text = match self {
            Self::Bytes(n) => return Ok(*n),
            Self::Text(t) => t.trim(),
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| anyhow::anyhow!("{text:?} is not a size (e.g. \"200GiB\")"))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            other => anyhow::bail!("{text:?}: unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"),
        };
        n.checked_mul(scale)
            .ok_or_else(|| anyhow::anyhow!("{text:?} is too large"))
    }
}

impl BlobsConfig {
    /// The store's blob settings (checked: a bad url names the problem).
    pub fn settings(&self) -> anyhow::Result<intact_store::BlobSettings> {
        let Some(url) = &self.url else {
            if self.endpoint.is_some() || self.region.is_some() || self.local_cache.is_some() {
                anyhow::bail!(
                    "blobs.endpoint, blobs.region and blobs.local_cache need blobs.url = \"s3://bucket/prefix\""
                );
            }
            return Ok(intact_store::BlobSettings::Files);
        };
        let mut s3 = intact_store::S3Settings::from_url(url).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(endpoint) = &self.endpoint {
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                anyhow::bail!("blobs.endpoint {endpoint:?} must start with http:// or https://");
            }
            s3.endpoint = Some(endpoint.clone());
        }
        s3.region.clone_from(&self.region);
        let cache = match &self.local_cache {
            None => None,
            Some(c) => {
                let max_size = c
                    .max_size
                    .bytes()
                    .map_err(|e| anyhow::anyhow!("blobs.local_cache.max_size: {e}"))?;
                if max_size == 0 {
                    anyhow::bail!("blobs.local_cache.max_size must be more than 0 (leave local_cache out for none)");
                }
                Some(intact_store::LocalCacheSettings {
                    dir: c.dir.clone(),
                    max_size,
                })
            }
        };
        Ok(intact_store::BlobSettings::S3(s3, cache))
    }
}

/// `[catalog]`: where versions, transactions and events are kept.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// `postgres://user[:password]@host[:port]/database` for a PostgreSQL catalog that any
    /// number of replicas share; unset for the embedded SQLite catalog in `data_dir`, owned
    /// by one process. Overridden by `INTACT_CATALOG_URL`.
    pub url: Option<String>,
}

impl CatalogSettings {
    pub fn choice(&self) -> anyhow::Result<intact_store::CatalogChoice> {
        intact_store::CatalogChoice::from_url(self.url.as_deref()).map_err(|e| anyhow::anyhow!("catalog.url: {e}"))
    }
}

/// Never prints a password in the URL.
impl std::fmt::Debug for CatalogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSettings")
            .field("url", &self.url.as_deref().map(intact_store::redact))
            .finish()
    }
}

/// How long the server waits on a client (all optional).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// A request head (request line and headers) must arrive within this; also how long an
    /// idle keep-alive connection stays open.
    pub header_timeout_seconds: u64,
    /// A client that sends no byte of a request body, or accepts no byte of a response, for
    /// this long is disconnected (uploads also end on `store.upload_idle_timeout_seconds`).
    pub idle_timeout_seconds: u64,
    /// Reverse proxies whose `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`
    /// are believed: addresses (`127.0.0.1`) or CIDR ranges (`10.0.0.0/8`). From any other
    /// peer those headers are ignored.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Threads that accept and serve connections, each running its connections alone (0: one
    /// per core). A connection stays on the thread that accepted it, so its requests are
    /// never woken on another core; background work runs on a pool of its own.
    pub threads: usize,
}

/// One entry of `http.trusted_proxies`: an address or a CIDR range, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedProxy(ipnet::IpNet);

impl TrustedProxy {
    pub fn contains(&self, addr: &std::net::IpAddr) -> bool {
        self.0.contains(addr)
    }
}

impl TryFrom<String> for TrustedProxy {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            // `10.1.2.3/8` means the range; keep it as written but match it as `10.0.0.0/8`.
            return Ok(Self(net.trunc()));
        }
        if let Ok(addr) = text.parse::<std::net::IpAddr>() {
            return Ok(Self(ipnet::IpNet::from(addr)));
        }
        Err(format!(
            "http.trusted_proxies: {text:?} is neither an IP address (127.0.0.1, ::1) nor a CIDR \
             range (10.0.0.0/8, fd00::/8)"
        ))
    }
}

impl From<TrustedProxy> for String {
    fn from(proxy: TrustedProxy) -> String {
        proxy.0.to_string()
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout_seconds: 30,
            idle_timeout_seconds: 120,
            trusted_proxies: Vec::new(),
            threads: 0,
        }
    }
}

impl HttpSettings {
    /// How many serving threads `threads` asks for.
    pub fn serving_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:7333".into()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./intact-data")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            catalog: CatalogSettings::default(),
            repos: Vec::new(),
            store: StoreSettings::default(),
            http: HttpSettings::default(),
            blobs: BlobsConfig::default(),
            auth: AuthSettings::default(),
            tls: None,
            limits: crate::limits::LimitsSettings::default(),
            import: ImportSettings::default(),
        }
    }
}

/// Default pace of the background scrubber: a full pass over 1 TB takes about a day and a half.
pub const DEFAULT_SCRUB_BYTES_PER_SECOND: u64 = 8 << 20;

/// Default least time between the starts of two scrubber passes: a day.
pub const DEFAULT_SCRUB_PASS_INTERVAL_SECONDS: u64 = 24 * 60 * 60;

/// Store tunables (all optional).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Lease of a transaction that asks for none.
    pub default_lease_seconds: u64,
    /// Longest lease a client may ask for.
    pub max_lease_seconds: u64,
    /// Unreferenced blobs younger than this survive garbage collection.
    pub gc_grace_seconds: u64,
    /// How often the background sweeper starts a garbage-collection pass, counted from the
    /// end of the last one (0: only on demand, `intact gc`). Start-up never sweeps.
    pub gc_interval_seconds: u64,
    /// How often a background pass also looks for orphan blob files (files the catalog has
    /// no record of, which only a crash in a few narrow windows, a restored catalog or a hand
    /// can leave; ARCHITECTURE.md lists them). 0: never in the background.
    pub orphan_sweep_interval_seconds: u64,
    /// Blob records (or listed blob files) a background pass handles per page, saving its
    /// place after each.
    pub gc_page_size: u32,
    /// Rest between the pages of a background pass, in milliseconds.
    pub gc_page_pause_ms: u64,
    /// How long finished transactions and their idempotency keys are remembered.
    pub txn_retention_seconds: u64,
    /// An upload whose body sends nothing for this long is ended with 408 (never longer than
    /// its transaction's lease).
    pub upload_idle_timeout_seconds: u64,
    /// An upload averaging fewer bytes a second than this over an idle-timeout window is
    /// ended with 408 (a trickle must not hold an upload slot and a lease for ever). 0: none.
    pub upload_min_bytes_per_second: u64,
    /// The background scrubber re-hashes every committed blob, over and over, reading at
    /// most this many bytes per second; a damaged blob is quarantined and logged with the
    /// versions it breaks. 0 turns it off.
    pub scrub_bytes_per_second: u64,
    /// A scrubber pass over every blob starts at most this often: a store read through
    /// faster than this rests until then (without it, a small store was re-read hundreds of
    /// times a second).
    pub scrub_pass_interval_seconds: u64,
    /// Bytes of small committed files (up to 64 KiB each, and a sixteenth of this) kept in
    /// memory once read and verified, so warm reads of them touch no file. 0 turns it off.
    pub small_file_cache_bytes: u64,
    /// Larger blob files on local disk (the file store's, a replica's cache's) remembered as
    /// having hashed right in full: a whole read of one that has not changed on disk since
    /// (same inode, size, modification and change times) is sent without hashing it again.
    /// Damage below the file system is then the scrubber's to find. 0: hash every whole read.
    pub verified_file_entries: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        let d = intact_store::StoreConfig::default();
        Self {
            default_lease_seconds: d.default_lease.as_secs(),
            max_lease_seconds: d.max_lease.as_secs(),
            gc_grace_seconds: d.gc_grace.as_secs(),
            gc_interval_seconds: 3600,
            orphan_sweep_interval_seconds: 7 * 24 * 3600,
            gc_page_size: 1000,
            gc_page_pause_ms: 10,
            txn_retention_seconds: d.txn_retention.as_secs(),
            upload_idle_timeout_seconds: d.upload_idle_timeout.as_secs(),
            upload_min_bytes_per_second: d.upload_min_bytes_per_second,
            scrub_bytes_per_second: DEFAULT_SCRUB_BYTES_PER_SECOND,
            scrub_pass_interval_seconds: DEFAULT_SCRUB_PASS_INTERVAL_SECONDS,
            small_file_cache_bytes: d.small_file_cache_bytes,
            verified_file_entries: d.verified_file_entries,
        }
    }
}

impl StoreSettings {
    /// The background sweeper's pacing, `None` when it is off.
    pub fn sweeper(&self) -> Option<intact_store::SweeperSettings> {
        (self.gc_interval_seconds > 0).then(|| intact_store::SweeperSettings {
            every: Duration::from_secs(self.gc_interval_seconds),
            orphans_every: (self.orphan_sweep_interval_seconds > 0)
                .then(|| Duration::from_secs(self.orphan_sweep_interval_seconds)),
            page: self.gc_page_size.max(1),
            pause: Duration::from_millis(self.gc_page_pause_ms),
            grace: Duration::from_secs(self.gc_grace_seconds),
            retry_after: intact_store::sweeper::RETRY_AFTER,
        })
    }

    pub fn to_store_config(&self) -> intact_store::StoreConfig {
        intact_store::StoreConfig {
            default_lease: Duration::from_secs(self.default_lease_seconds),
            max_lease: Duration::from_secs(self.max_lease_seconds),
            gc_grace: Duration::from_secs(self.gc_grace_seconds),
            txn_retention: Duration::from_secs(self.txn_retention_seconds),
            upload_idle_timeout: Duration::from_secs(self.upload_idle_timeout_seconds),
            small_file_cache_bytes: self.small_file_cache_bytes,
            verified_file_entries: self.verified_file_entries,
            upload_min_bytes_per_second: self.upload_min_bytes_per_second,
            ..intact_store::StoreConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    /// Versions are published into it.
    Hosted,
    /// Versions are fetched from `upstream` on first request and kept.
    Proxy,
    /// A read-only view over `members`, tried in order.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoFormat {
    Generic,
    Go,
}

/// How a Go proxy repo treats its upstream. Stored module versions are immutable and served
/// without asking the upstream in every mode; the modes differ in what an upstream failure
/// means for `list`, `@latest` and versions not stored yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// An upstream failure is the answer (5xx), even when versions of the module are stored:
    /// a `list` or `@latest` is never silently older than the upstream's.
    Strict,
    /// When the upstream fails, `list` and `@latest` are answered from what is stored.
    #[default]
    Fallback,
    /// The upstream is never contacted: `list`, `@latest` and files come from the catalog
    /// alone, and what is not stored is not found (404).
    Offline,
}

/// `checksum_db`: a database, or `"off"` (like `GOSUMDB=off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumDbSetting {
    Database(ChecksumDbConfig),
    Off,
}

impl ChecksumDbSetting {
    /// The database to use: the configured one, the default one, or none for `"off"`.
    pub fn database(setting: Option<&Self>) -> Option<ChecksumDbConfig> {
        match setting {
            None => Some(ChecksumDbConfig::go_default()),
            Some(Self::Database(db)) => Some(db.clone()),
            Some(Self::Off) => None,
        }
    }
}

/// Read by hand rather than as an untagged enum, so a mistake in the table names the field
/// ("missing field `url`", "unknown field `kye`") instead of "matched no variant".
impl<'de> Deserialize<'de> for ChecksumDbSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ChecksumDbSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"off\" or a table { name, url, key }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "off" {
                    Ok(ChecksumDbSetting::Off)
                } else {
                    Err(E::custom(format!(
                        "checksum_db = {v:?}: write \"off\" or a table {{ name, url, key }}"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ChecksumDbConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ChecksumDbSetting::Database)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for ChecksumDbSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Database(db) => db.serialize(serializer),
            Self::Off => serializer.serialize_str("off"),
        }
    }
}

/// A checksum database (GOSUMDB): its name, where it answers, and its verifier key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumDbConfig {
    pub name: String,
    pub url: String,
    /// `NAME+HASH+KEY`, as in GOSUMDB.
    pub key: String,
}

impl ChecksumDbConfig {
    /// The public Go checksum database, with the key the go command has built in.
    pub fn go_default() -> Self {
        Self {
            name: "sum.golang.org".into(),
            url: "https://sum.golang.org".into(),
            key: "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8".into(),
        }
    }
}

/// `[repo.direct]`: the go command a Go proxy repo runs for its `direct` upstream entry.
/// Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectConfig {
    /// The go command (default: `go` on `PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<PathBuf>,
    /// A netrc file with the credentials of HTTPS hosts, for git and the go command's own
    /// `?go-get=1` lookups. Read at each fetch, so a rotated file needs no restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netrc: Option<PathBuf>,
    /// A git config file (credential helpers, `url.<base>.insteadOf`, `http.sslCAInfo`...).
    /// The go command runs with a home of its own, so the service user's `~/.gitconfig` is
    /// read only when named here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_config: Option<PathBuf>,
    /// GOINSECURE-style globs of module paths that may be fetched over plain HTTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure: Vec<String>,
    /// More environment for the go command (`HTTPS_PROXY`, `GIT_SSH_COMMAND`, `GOVCS`...).
    /// The variables intact sets itself (`GOPROXY`, `GOFLAGS`, `GOMODCACHE`...) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// One named artifact of a staging repository: which upstream files make it up.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    /// File names or globs (`*`, `?`) relative to the build's directory upstream.
    pub files: Vec<String>,
    /// Unpack archives (tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip) into the version.
    #[serde(default)]
    pub extract: bool,
}

/// A repository.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub name: RepoName,
    pub kind: RepoKind,
    #[serde(default = "default_format")]
    pub format: RepoFormat,
    /// Proxy repos: where to fetch from (`https://...`, `http://...`, `file:///dir`, `s3://bucket/prefix`).
    /// Go proxies accept a GOPROXY-style list separated by `,` or `|`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Group repos: members tried in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<RepoName>,
    /// Go proxy repos: module path globs (GOPRIVATE syntax) never fetched upstream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Go proxy repos: rules `GLOB[@CONSTRAINT]` of modules (and versions) that are served;
    /// when not empty, nothing else is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Go proxy repos: rules `GLOB[@CONSTRAINT]` of modules (and versions) refused with 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Go proxy repos: what an upstream failure means (default `fallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    /// Go proxy repos: the checksum database proxied, verified, at `/go/{repo}/sumdb/{name}/`,
    /// and checked before a fetched module version is committed (default: sum.golang.org;
    /// `"off"` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_db: Option<ChecksumDbSetting>,
    /// Go proxy repos: GONOSUMDB-style globs of modules not checked against the checksum
    /// database (private modules it cannot know).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_sum: Vec<String>,
    /// Go proxy repos whose upstream lists `direct`: how the go command that fetches from
    /// version control is run (credentials, insecure hosts, its environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectConfig>,
    /// Go proxy repos: how long an upstream `list` / `@latest` answer is reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_cache_seconds: Option<u64>,
    /// Proxy repos: how long an upstream failure is remembered before trying again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_cache_seconds: Option<u64>,
    /// Proxy repos: the longest a request waits for an upstream fetch in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_timeout_seconds: Option<u64>,
    /// Proxy repos: the longest the upstream part of one fetch (or staging) may take in all,
    /// however steadily the upstream trickles; past it the fetch is abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_deadline_seconds: Option<u64>,
    /// Staging repos: named artifacts, each staged as one atomic version of a build.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, ArtifactSpec>,
    /// Proxy repos: disk cap in bytes; least recently used staged versions are evicted past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Staging repos with an `s3://` upstream: the S3-compatible endpoint (e.g.
    /// `http://127.0.0.1:9000`); default: AWS itself, or `AWS_ENDPOINT`. Credentials come only
    /// from the standard `AWS_*` environment variables, never from this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// Staging repos with an `s3://` upstream: the bucket's region (default: `AWS_REGION` or
    /// `AWS_DEFAULT_REGION`, else `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Staging repos with an `s3://` upstream: allow a plain `http://` endpoint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub s3_allow_http: bool,
    /// Allow versions whose file paths differ only in case (`A.txt` and `a.txt`). Off by
    /// default: macOS and Windows clients could not hold both files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub case_sensitive_paths: bool,
    /// Anyone may read this repo without a token, also once tokens are in use (reading a
    /// proxy repo fetches from its upstream; staging stages). Writing always needs a token
    /// once any token exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous_read: bool,
}

fn default_format() -> RepoFormat {
    RepoFormat::Generic
}

impl RepoConfig {
    /// The repo as the API shows it: its configuration with any credentials in `upstream`
    /// (`https://user:password@host/...`) replaced by `***`.
    pub fn public_view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(up) = &self.upstream {
            v["upstream"] = serde_json::Value::String(without_credentials(up));
        }
        // The go command's environment may carry tokens (a proxy's password, a GIT_ASKPASS
        // secret): only its names are shown.
        if let Some(env) = v.pointer_mut("/direct/env").and_then(serde_json::Value::as_object_mut) {
            for value in env.values_mut() {
                *value = serde_json::Value::String("***".into());
            }
        }
        v
    }

    pub fn new(name: &str, kind: RepoKind, format: RepoFormat) -> Self {
        Self {
            name: RepoName::parse(name).unwrap_or_else(|_| RepoName::parse("invalid").expect("literal")),
            kind,
            format,
            upstream: None,
            members: Vec::new(),
            exclude: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            network_mode: None,
            checksum_db: None,
            no_sum: Vec::new(),
            direct: None,
            list_cache_seconds: None,
            failure_cache_seconds: None,
            fetch_timeout_seconds: None,
            fetch_deadline_seconds: None,
            artifacts: BTreeMap::new(),
            max_size: None,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: false,
            case_sensitive_paths: false,
            anonymous_read: false,
        }
    }
}

/// The repositories served when the configuration declares none.
pub fn default_repos() -> Vec<RepoConfig> {
    let files = RepoConfig::new("files", RepoKind::Hosted, RepoFormat::Generic);
    let go_private = RepoConfig::new("go-private", RepoKind::Hosted, RepoFormat::Go);
    let mut go_public = RepoConfig::new("go-public", RepoKind::Proxy, RepoFormat::Go);
    go_public.upstream = Some("https://proxy.golang.org".into());
    let mut go = RepoConfig::new("go", RepoKind::Group, RepoFormat::Go);
    go.members = vec![go_private.name.clone(), go_public.name.clone()];
    vec![files, go_private, go_public, go]
}

impl Config {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config = Self::parse_unchecked(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The file's syntax and types only (the default repos when it declares none); see
    /// [`Config::problems`] for its values.
    pub fn parse_unchecked(text: &str) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text)?;
        if config.repos.is_empty() {
            config.repos = default_repos();
        }
        Ok(config)
    }

    /// The embedded default.
    pub fn embedded_default() -> Self {
        Self {
            repos: default_repos(),
            ..Self::default()
        }
    }

    /// Checks cross-field rules, so a bad file fails at start-up with a message naming every
    /// problem (and the repo of each).
    pub fn validate(&self) -> anyhow::Result<()> {
        let problems = self.problems();
        match problems.len() {
            0 => Ok(()),
            1 => Err(anyhow::anyhow!("{}", problems[0])),
            n => Err(anyhow::anyhow!(
                "{n} problems:\n{}",
                problems
                    .iter()
                    .map(|p| format!("  - {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        }
    }

    /// Every problem with the configuration's values, each naming the setting (and repo) it
    /// is about; empty when there is none.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Pushes a problem (the arguments of `format!`).
        macro_rules! problem {
            ($($arg:tt)*) => { problems.push(format!($($arg)*)) };
        }
        // Durations end up added to clock readings; absurd values must fail here, not overflow
        // later.
        const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;
        if let Err(e) = self.catalog.choice() {
            problem!("{e:#}");
        }
        let st = &self.store;
        if !(1..=100_000).contains(&st.gc_page_size) {
            problem!(
                "store.gc_page_size = {}: between 1 and 100000 (a page is read into memory and swept under one lease)",
                st.gc_page_size
            );
        }
        for (field, v) in [
            ("store.default_lease_seconds", st.default_lease_seconds),
            ("store.max_lease_seconds", st.max_lease_seconds),
            ("store.gc_grace_seconds", st.gc_grace_seconds),
            ("store.gc_interval_seconds", st.gc_interval_seconds),
            ("store.orphan_sweep_interval_seconds", st.orphan_sweep_interval_seconds),
            ("store.gc_page_pause_ms", st.gc_page_pause_ms / 1000),
            ("store.txn_retention_seconds", st.txn_retention_seconds),
            ("store.upload_idle_timeout_seconds", st.upload_idle_timeout_seconds),
            ("http.header_timeout_seconds", self.http.header_timeout_seconds),
            ("http.idle_timeout_seconds", self.http.idle_timeout_seconds),
        ] {
            if v > MAX_SECONDS {
                problem!("{field} = {v}: at most {MAX_SECONDS} (ten years)");
            }
        }
        if self.http.header_timeout_seconds == 0 || self.http.idle_timeout_seconds == 0 {
            problem!("http.header_timeout_seconds and http.idle_timeout_seconds must be at least 1");
        }
        if let Err(e) = self.blobs.settings() {
            problem!("{e:#}");
        }
        if let Err(e) = self.limits.resolve() {
            problem!("{e:#}");
        }
        if st.upload_idle_timeout_seconds == 0 {
            problem!("store.upload_idle_timeout_seconds must be at least 1");
        }
        if st.default_lease_seconds == 0 || st.default_lease_seconds > st.max_lease_seconds {
            problem!("store.default_lease_seconds must be between 1 and store.max_lease_seconds");
        }
        for root in &self.import.allowed_roots {
            if !root.is_absolute() {
                problem!("import.allowed_roots: {} is not an absolute path", root.display());
            } else if !root.is_dir() {
                problem!("import.allowed_roots: {} is not an existing directory", root.display());
            }
        }
        for repo in &self.repos {
            for (field, v) in [
                ("list_cache_seconds", repo.list_cache_seconds),
                ("failure_cache_seconds", repo.failure_cache_seconds),
                ("fetch_timeout_seconds", repo.fetch_timeout_seconds),
                ("fetch_deadline_seconds", repo.fetch_deadline_seconds),
            ] {
                if v.is_some_and(|v| v > MAX_SECONDS) {
                    problem!("repo {}: {field} is larger than ten years", repo.name);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for repo in &self.repos {
            let n = &repo.name;
            if !seen.insert(n.clone()) {
                problem!("repo {n}: declared twice");
            }
            problems.extend(crate::go::settings::problems(repo));
            match repo.kind {
                RepoKind::Hosted => {
                    if repo.upstream.is_some() {
                        problem!("repo {n}: a hosted repo has no upstream (did you mean kind = \"proxy\"?)");
                    }
                }
                RepoKind::Proxy => {
                    let Some(up) = &repo.upstream else {
                        problem!("repo {n}: a proxy repo needs an upstream");
                        continue;
                    };
                    if up.trim().is_empty() {
                        problem!("repo {n}: upstream is empty");
                    }
                }
                RepoKind::Group => {
                    if repo.members.is_empty() {
                        problem!("repo {n}: a group needs members");
                    }
                }
            }
            if repo.kind != RepoKind::Group && !repo.members.is_empty() {
                problem!("repo {n}: only a group has members");
            }
            if !repo.artifacts.is_empty() && (repo.kind != RepoKind::Proxy || repo.format != RepoFormat::Generic) {
                problem!("repo {n}: artifacts are only for generic proxy (staging) repos");
            }
            for (art, spec) in &repo.artifacts {
                if intact_core::Version::parse(art).is_err() {
                    problem!("repo {n}: artifact name {art:?} must be a valid version (1-128 of [A-Za-z0-9._+-])");
                }
                if spec.files.is_empty() {
                    problem!("repo {n}: artifact {art} lists no files");
                }
            }
        }
        for repo in self.repos.iter().filter(|r| r.kind == RepoKind::Group) {
            for m in &repo.members {
                let Some(member) = self.repos.iter().find(|r| &r.name == m) else {
                    problem!("repo {}: member {m} is not declared", repo.name);
                    continue;
                };
                if member.kind == RepoKind::Group {
                    problem!("repo {}: member {m} is a group; groups do not nest", repo.name);
                }
                if member.format != repo.format {
                    problem!("repo {}: member {m} has another format", repo.name);
                }
            }
        }
        problems
    }

    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.repos.iter().find(|r| r.name.as_str() == name)
    }

    /// The server's own directories (data dir, local blob cache), canonical: never import
    /// sources. Those that do not exist yet are left out (nothing to import from there).
    pub fn import_excluded(&self) -> anyhow::Result<Vec<PathBuf>> {
        let cache = self.blobs.local_cache.as_ref().map(|c| c.dir.clone());
        let mut out = Vec::new();
        for dir in std::iter::once(self.data_dir.clone()).chain(cache) {
            match std::fs::canonicalize(&dir) {
                Ok(canonical) => out.push(canonical),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("resolving {}: {e}", dir.display()),
            }
        }
        Ok(out)
    }

    /// The store's tunables: `[store]` plus what the repos say (case-sensitive paths), and no
    /// memory of verified files while import by path is on: a file imported by `move` is an
    /// inode someone else may still hold open for writing (or mapped), and writes through a
    /// mapping need not move the file's times, so such a file must be hashed on every read.
    pub fn store_config(&self) -> intact_store::StoreConfig {
        intact_store::StoreConfig {
            verified_file_entries: if self.import.allowed_roots.is_empty() {
                self.store.verified_file_entries
            } else {
                0
            },
            case_sensitive_repos: self
                .repos
                .iter()
                .filter(|r| r.case_sensitive_paths)
                .map(|r| r.name.clone())
                .collect(),
            // Checked by `validate`; an unchecked bad value keeps the default.
            max_files_per_transaction: self
                .limits
                .resolve()
                .map_or(Some(crate::limits::settings::DEFAULT_MAX_FILES_PER_TRANSACTION), |l| {
                    l.max_files_per_transaction
                }),
            ..self.store.to_store_config()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_parses() {
        let c = Config::from_toml(
            r#"
listen = "127.0.0.1:7333"
data_dir = "./intact-data"

[[repo]]
name = "renders"
kind = "hosted"
format = "generic"
"#,
        )
        .expect("parses");
        assert_eq!(c.repos.len(), 1);
        assert_eq!(c.repos[0].name.as_str(), "renders");
    }

    #[test]
    fn gc_page_size_is_bounded_and_zero_interval_turns_the_sweeper_off() {
        for bad in [0, 100_001, 4_000_000_000u32] {
            let err = Config::from_toml(&format!("[store]\ngc_page_size = {bad}"))
                .expect_err("out of bounds")
                .to_string();
            assert!(err.contains("store.gc_page_size"), "{err}");
        }
        let c = Config::from_toml("[store]\ngc_page_size = 50\norphan_sweep_interval_seconds = 0").expect("parses");
        let s = c.store.sweeper().expect("on by default");
        assert_eq!(s.page, 50);
        assert_eq!(s.orphans_every, None);
        let c = Config::from_toml("[store]\ngc_interval_seconds = 0").expect("parses");
        assert!(c.store.sweeper().is_none());
    }

    #[test]
    fn catalog_url_chooses_the_catalog() {
        let c = Config::from_toml("").expect("parses");
        assert_eq!(
            c.catalog.choice().expect("choice"),
            intact_store::CatalogChoice::Embedded
        );
        let c = Config::from_toml("[catalog]\nurl = \"postgres://intact:pw@db/intact\"").expect("parses");
        assert_eq!(
            c.catalog.choice().expect("choice"),
            intact_store::CatalogChoice::Postgres {
                url: "postgres://intact:pw@db/intact".into()
            }
        );
        assert!(!format!("{c:?}").contains("pw"), "the password is never printed");
        let err = Config::from_toml("[catalog]\nurl = \"mysql://db\"").expect_err("unknown scheme");
        assert!(format!("{err:#}").contains("catalog.url"), "{err:#}");
    }

    #[test]
    fn blobs_default_to_files_and_take_an_s3_url() {
        let files = Config::from_toml("")
            .expect("parses")
            .blobs
            .settings()
            .expect("settings");
        assert!(matches!(files, intact_store::BlobSettings::Files));
        let c = Config::from_toml(
            "[blobs]\nurl = \"s3://artifacts/intact/\"\nendpoint = \"http://garage:3900\"\nregion = \"garage\"",
        )
        .expect("parses");
        match c.blobs.settings().expect("settings") {
            intact_store::BlobSettings::S3(s3, cache) => {
                assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("artifacts", "intact"));
                assert_eq!(s3.endpoint.as_deref(), Some("http://garage:3900"));
                assert_eq!(s3.region.as_deref(), Some("garage"));
                assert!(s3.credentials.is_none(), "credentials come from AWS_* variables");
                assert!(cache.is_none());
            }
            other => panic!("{other:?}"),
        }
        let c = Config::from_toml(
            "[blobs]\nurl = \"s3://a\"\nlocal_cache = { dir = \"/var/cache/intact\", max_size = \"200GiB\" }",
        )
        .expect("parses");
        match c.blobs.settings().expect("settings") {
            intact_store::BlobSettings::S3(_, Some(cache)) => {
                assert_eq!(cache.dir, PathBuf::from("/var/cache/intact"));
                assert_eq!(cache.max_size, 200 << 30);
            }
            other => panic!("{other:?}"),
        }
        for (size, bytes) in [("1048576", 1 << 20), ("\"500MB\"", 500_000_000), ("\"3 KiB\"", 3 << 10)] {
            let c = Config::from_toml(&format!(
                "[blobs]\nurl = \"s3://a\"\nlocal_cache = {{ dir = \"/c\", max_size = {size} }}"
            ))
            .expect("parses");
            match c.blobs.settings().expect("settings") {
                intact_store::BlobSettings::S3(_, Some(cache)) => assert_eq!(cache.max_size, bytes, "{size}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn files_are_hashed_on_every_read_while_import_by_path_is_on() {
        let c = Config::from_toml("").expect("parses");
        assert!(c.store_config().verified_file_entries > 0);
        let dir = tempfile::tempdir().expect("dir");
        let c = Config::from_toml(&format!("[import]\nallowed_roots = [{:?}]", dir.path())).expect("parses");
        assert_eq!(
            c.store_config().verified_file_entries,
            0,
            "a moved-in file may have a writer"
        );
    }

    #[test]
    fn import_roots_must_be_absolute_existing_directories() {
        let c = Config::from_toml("").expect("parses");
        assert!(c.import.allowed_roots.is_empty(), "import by path is off by default");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        for (root, needle) in [
            ("renders".to_owned(), "not an absolute path"),
            (
                dir.path().join("missing").display().to_string(),
                "not an existing directory",
            ),
            (file.display().to_string(), "not an existing directory"),
        ] {
            let err = format!(
                "{:#}",
                Config::from_toml(&format!("[import]\nallowed_roots = [{root:?}]")).expect_err(&root)
            );
            assert!(err.contains("import.allowed_roots") && err.contains(needle), "{err}");
        }
        let c = Config::from_toml(&format!("[import]\nallowed_roots = [{:?}]", dir.path().join("."))).expect("parses");
        let roots = c.import.canonical_roots().expect("canonical");
        assert_eq!(roots, vec![dir.path().canonicalize().expect("canonical")]);
    }

    #[test]
    fn defaults_without_repos() {
        let c = Config::from_toml("").expect("parses");
        assert!(c.repo("files").is_some());
        assert!(c.repo("go").is_some());
        assert_eq!(c.listen, "127.0.0.1:7333");
    }

    #[test]
    fn errors_name_the_problem() {
        let bad = [
            ("[[repo]]\nname = \"a/b\"\nkind = \"hosted\"", "repo"),
            ("[[repo]]\nname = \"p\"\nkind = \"proxy\"", "needs an upstream"),
            (
                "[[repo]]\nname = \"g\"\nkind = \"group\"\nmembers = [\"x\"]",
                "not declared",
            ),
            ("[[repo]]\nname = \"h\"\nkind = \"hosted\"\ncolour = 1", "colour"),
            ("[store]\ngc_grace_seconds = 999999999999", "store.gc_grace_seconds"),
            ("[blobs]\nurl = \"https://bucket\"", "s3://bucket/prefix"),
            ("[blobs]\nurl = \"s3:///prefix\"", "names no bucket"),
            ("[blobs]\nendpoint = \"http://garage:3900\"", "need blobs.url"),
            (
                "[blobs]\nurl = \"s3://b\"\nlocal_cache = { dir = \"/c\", max_size = \"2 parsecs\" }",
                "blobs.local_cache.max_size",
            ),
            (
                "[blobs]\nurl = \"s3://b\"\nendpoint = \"garage:3900\"",
                "blobs.endpoint",
            ),
            (
                "[[repo]]\nname = \"p\"\nkind = \"proxy\"\nformat = \"go\"\nupstream = \"https://x\"\nfetch_timeout_seconds = 999999999999",
                "fetch_timeout_seconds",
            ),
        ];
        for (text, needle) in bad {
            let err = format!("{:#}", Config::from_toml(text).expect_err(text));
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}

/// `text` (an upstream, or a GOPROXY-style list of them) with the user info of every URL in
/// it replaced by `***`.
pub fn without_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the next `/`, or at a list separator.
        let end = tail.find(['/', ',', '|']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str("***");
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod credential_tests {
    use super::without_credentials;

    #[test]
    fn credentials_in_upstreams_are_never_shown() {
        assert_eq!(
            without_credentials("https://u:secret@host/x,https://h2/y|http://t@h3"),
            "https://***@host/x,https://h2/y|http://***@h3"
        );
        assert_eq!(without_credentials("file:///srv/archive"), "file:///srv/archive");
        assert_eq!(without_credentials("s3://bucket/prefix"), "s3://bucket/prefix");
    }
}
