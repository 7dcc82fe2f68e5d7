//! Proxy repos: what happens on a miss.
//!
//! * `.info`/`.mod` miss: fetch both from upstream (in parallel), check them, commit them as
//!   the `@gomod/<module>` version. The zip is not downloaded.
//! * `.zip` miss: fetch the zip into a temp file while making sure the `@gomod` version exists
//!   (joining or starting that flight, so `.info`/`.mod` are requested upstream once, ever),
//!   check the zip for `module@version`, then commit all three files as the module's version.
//! * `list` / `@latest`: asked upstream, answers reused for `list_cache_seconds`, merged with
//!   what is stored; when the upstream fails, what is stored is still served.
//!
//! Every fetch runs under [`SingleFlight`]: one upstream request per file however many
//! clients ask at once, detached from the client that started it, its outcome (failure
//! included) shared by every waiter. A definitive failure (404/410, content that broke Go's
//! rules) is remembered for `failure_cache_seconds`; a transient one (refused, reset, 5xx,
//! cut body, timeout) is not, so the next request tries again. The upstream part of a fetch
//! has an overall deadline (`fetch_deadline_seconds`), so a trickling upstream cannot keep a
//! flight alive for ever. Nothing that failed a check, or arrived truncated, is ever committed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intact_core::{Manifest, RepoName, Version};
use intact_go::rules::{Refusal, Rules};
use intact_go::{dirhash, pattern, semver};
use intact_store::Store;
use serde_json::json;
use tokio::time::Instant;

use super::check;
use super::direct::DirectSettings;
use super::error::ProxyError;
use super::layout::{self, Committed, INFO_FILE, MOD_FILE, ZIP_FILE};
use super::request::FileKind;
use super::sumdb::ChecksumDb;
use super::upstream::{self, Entry, ProtocolPath, Source, Upstream};
use super::versions;
use crate::config::NetworkMode;
use crate::shared_flight::across_replicas;
use crate::singleflight::SingleFlight;

/// One version fetch: `full` = all three files, otherwise `.info` + `.mod`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VersionKey {
    module: String,
    version: String,
    full: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Meta {
    List,
    Latest,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MetaKey {
    module: String,
    meta: Meta,
}

/// At most this many upstream `list`/`@latest` answers are cached per repo...
const META_CACHE_ENTRIES: usize = 50_000;
/// ...holding at most this many bytes (a `list` may be megabytes).
const META_CACHE_BYTES: usize = 64 << 20;

/// Upstream `list`/`@latest` answers younger than `list_ttl`, by module. Bounded in entries
/// and bytes; expired answers are swept at least once per `list_ttl` while answers arrive, so
/// stale lists of modules nobody asks for again are not held for ever.
#[derive(Debug)]
struct MetaCache {
    ttl: Duration,
    inner: Mutex<MetaEntries>,
}

#[derive(Debug, Default)]
struct MetaEntries {
    answers: HashMap<MetaKey, (Instant, Arc<Vec<u8>>)>,
    /// The sum of the cached bodies' sizes.
    bytes: usize,
    next_sweep: Option<Instant>,
}

impl MetaCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(MetaEntries::default()),
        }
    }

    fn get(&self, key: &MetaKey) -> Option<Arc<Vec<u8>>> {
        let cache = self.inner.lock().ok()?;
        let (at, body) = cache.answers.get(key)?;
        (at.elapsed() < self.ttl).then(|| body.clone())
    }

    fn insert(&self, key: MetaKey, body: Arc<Vec<u8>>) {
        // An answer larger than a quarter of the budget is not worth evicting others for.
        if self.ttl.is_zero() || body.len() > META_CACHE_BYTES / 4 {
            return;
        }
        let Ok(mut cache) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        let full = |c: &MetaEntries| c.answers.len() >= META_CACHE_ENTRIES || c.bytes + body.len() > META_CACHE_BYTES;
        if cache.next_sweep.is_none_or(|at| now >= at) || full(&cache) {
            let ttl = self.ttl;
            cache.answers.retain(|_, (at, _)| now.duration_since(*at) < ttl);
            cache.bytes = cache.answers.values().map(|(_, b)| b.len()).sum();
            cache.next_sweep = Some(now + ttl);
        }
        if full(&cache) {
            cache.answers.clear();
            cache.bytes = 0;
        }
        let size = body.len();
        if let Some((_, old)) = cache.answers.insert(key, (now, body)) {
            cache.bytes -= old.len();
        }
        cache.bytes += size;
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|c| (c.answers.len(), c.bytes))
            .unwrap_or_default()
    }
}

/// Settings of one proxy repo.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub name: RepoName,
    pub upstream: Vec<Entry>,
    /// GOPRIVATE-style globs of modules never fetched upstream.
    pub exclude: Vec<String>,
    /// Which modules and versions are served at all (403 for the rest).
    pub rules: Rules,
    /// What an upstream failure means, or whether the upstream is asked at all.
    pub network_mode: NetworkMode,
    /// The checksum database fetched versions are checked against (none: `checksum_db = "off"`).
    pub sumdb: Option<Arc<ChecksumDb>>,
    /// GONOSUMDB-style globs of modules not checked against it.
    pub no_sum: Vec<String>,
    pub fetch_timeout: Duration,
    /// The longest the upstream part of one fetch may take, from its start to its last byte.
    pub fetch_deadline: Duration,
    pub failure_ttl: Duration,
    pub list_ttl: Duration,
    /// Where zips are downloaded before they are checked (same file system as the blobs).
    pub tmp_dir: PathBuf,
    /// How the go command runs for a `direct` upstream entry.
    pub direct: Option<DirectSettings>,
}

/// A proxy repo's upstream and its in-flight work.
#[derive(Debug)]
pub struct ProxyRepo {
    pub name: RepoName,
    upstream: Upstream,
    /// The exclude globs joined with `,`, as `match_prefix_patterns` takes them.
    exclude: String,
    rules: Rules,
    network_mode: NetworkMode,
    sumdb: Option<Arc<ChecksumDb>>,
    /// The no-sum globs joined with `,`.
    no_sum: String,
    fetch_timeout: Duration,
    fetch_deadline: Duration,
    failure_ttl: Duration,
    tmp_dir: PathBuf,
    versions: SingleFlight<VersionKey, Arc<Manifest>, ProxyError>,
    meta: SingleFlight<MetaKey, Arc<Vec<u8>>, ProxyError>,
    meta_cache: MetaCache,
}

impl ProxyRepo {
    /// The fetches from upstream running now and the failures remembered now, each named
    /// as the go command would ask for it (`module@version`, `module/@v/list`).
    pub fn flights_now(&self) -> crate::singleflight::FlightsNow<String> {
        let versions = self.versions.now();
        let meta = self.meta.now();
        let version_key = |k: &VersionKey| match k.full {
            true => format!("{}@{}", k.module, k.version),
            false => format!("{}@{} (.info and .mod)", k.module, k.version),
        };
        let meta_key = |k: &MetaKey| match k.meta {
            Meta::List => format!("{}/@v/list", k.module),
            Meta::Latest => format!("{}/@latest", k.module),
        };
        let mut running: Vec<String> = versions.running.iter().map(version_key).collect();
        running.extend(meta.running.iter().map(meta_key));
        let mut failures: Vec<crate::singleflight::RememberedFailure<String>> = versions
            .failures
            .into_iter()
            .map(|f| crate::singleflight::RememberedFailure {
                key: version_key(&f.key),
                at: f.at,
                remembered_for: f.remembered_for,
                error: f.error,
            })
            .collect();
        failures.extend(
            meta.failures
                .into_iter()
                .map(|f| crate::singleflight::RememberedFailure {
                    key: meta_key(&f.key),
                    at: f.at,
                    remembered_for: f.remembered_for,
                    error: f.error,
                }),
        );
        crate::singleflight::FlightsNow { running, failures }
    }

    pub fn new(settings: ProxySettings) -> anyhow::Result<Self> {
        let upstream = Upstream::new(settings.upstream, settings.fetch_timeout, settings.direct)?;
        Ok(Self {
            name: settings.name,
            upstream,
            exclude: settings.exclude.join(","),
            rules: settings.rules,
            network_mode: settings.network_mode,
            sumdb: settings.sumdb,
            no_sum: settings.no_sum.join(","),
            fetch_timeout: settings.fetch_timeout,
            fetch_deadline: settings.fetch_deadline,
            failure_ttl: settings.failure_ttl,
            tmp_dir: settings.tmp_dir,
            versions: SingleFlight::new(settings.failure_ttl),
            meta: SingleFlight::new(settings.failure_ttl),
            meta_cache: MetaCache::new(settings.list_ttl),
        })
    }

    /// Whether `module` matches an exclude glob: such modules are never fetched upstream,
    /// and this repo answers 404 for them even if an older copy is stored (so a public module
    /// squatting a private name cannot be served through it).
    pub fn excludes(&self, module: &str) -> bool {
        !self.exclude.is_empty() && pattern::match_prefix_patterns(&self.exclude, module)
    }

    /// Runs the upstream part of a fetch (`what`) until its deadline.
    async fn before_deadline<T>(
        &self,
        deadline: Instant,
        what: &str,
        upstream_work: impl std::future::Future<Output = T>,
    ) -> Result<T, ProxyError> {
        tokio::time::timeout_at(deadline, upstream_work)
            .await
            .map_err(|_| ProxyError::Deadline {
                what: what.to_owned(),
                seconds: self.fetch_deadline.as_secs(),
            })
    }

    fn refuse_excluded(&self, module: &str) -> Result<(), ProxyError> {
        if self.excludes(module) {
            return Err(ProxyError::NotFound(format!(
                "not found: {module} matches an exclude pattern of repo {}: it is never fetched upstream",
                self.name
            )));
        }
        Ok(())
    }

    /// Refuses a module this repo never serves: excluded (404), or refused as a whole by
    /// its rules (403).
    fn refuse_module(&self, module: &str) -> Result<(), ProxyError> {
        self.refuse_excluded(module)?;
        self.rules
            .check_module(module)
            .map_err(|refusal| self.forbidden(module, refusal))
    }

    /// Refuses a module version this repo does not serve (see [`ProxyRepo::refuse_module`]);
    /// stored copies included, so a rule added later takes effect at once.
    pub fn refuse_version(&self, module: &str, version: &str) -> Result<(), ProxyError> {
        self.refuse_module(module)?;
        self.rules
            .check_version(module, version)
            .map_err(|refusal| self.forbidden(&format!("{module}@{version}"), refusal))
    }

    fn forbidden(&self, what: &str, refusal: Refusal) -> ProxyError {
        ProxyError::Forbidden(match refusal {
            Refusal::Denied(rule) => format!("forbidden: {what} is denied by rule {rule:?} of repo {}", self.name),
            Refusal::NotAllowed => format!(
                "forbidden: {what} matches none of the allow rules of repo {}, which serves nothing else",
                self.name
            ),
        })
    }

    pub fn is_offline(&self) -> bool {
        self.network_mode == NetworkMode::Offline
    }

    /// Whether an upstream outage must be the answer even where stored versions could serve.
    pub fn is_strict(&self) -> bool {
        self.network_mode == NetworkMode::Strict
    }

    /// Checks fetched files' `h1:` (the go.mod's, and the zip's when given) against the
    /// checksum database before they are committed, unless the module is a no-sum one or the
    /// repo checks nothing. A version the database does not know is not found; one whose
    /// bytes differ from the database's record (re-tagged, tampered) is refused and logged.
    async fn check_sum(
        &self,
        store: &Store,
        source: &Source,
        module: &str,
        version: &str,
        go_mod_h1: &str,
        zip_h1: Option<&str>,
    ) -> Result<(), ProxyError> {
        let Some(db) = &self.sumdb else {
            return Ok(());
        };
        if !self.no_sum.is_empty() && pattern::match_prefix_patterns(&self.no_sum, module) {
            return Ok(());
        }
        let recorded = db.module_hashes(store, module, version).await.map_err(|e| {
            if e.is_not_found() {
                ProxyError::NotFound(format!(
                    "not found: {module}@{version}: checksum database {} has no record of it, so it is not cached (a private module belongs in no_sum of repo {}): {e}",
                    db.name, self.name
                ))
            } else {
                e
            }
        })?;
        let checks = [
            (format!("{module}@{version}/go.mod"), Some(go_mod_h1), recorded.go_mod),
            (format!("{module}@{version}"), zip_h1, recorded.zip),
        ];
        for (what, served, want) in checks {
            let Some(served) = served else { continue };
            match want {
                Some(want) if want == served => {}
                Some(want) => {
                    tracing::error!(
                        repo = %self.name,
                        %source,
                        file = %what,
                        served,
                        recorded = %want,
                        sumdb = %db.name,
                        "upstream served a module version whose hash differs from the checksum database's; refused, not cached"
                    );
                    return Err(ProxyError::InvalidUpstream(format!(
                        "upstream {source} served {what} with {served}, but checksum database {} records {want}: refused, not cached (re-tagged or tampered)",
                        db.name
                    )));
                }
                None => {
                    return Err(ProxyError::InvalidUpstream(format!(
                        "checksum database {} has no {what} line in its record; not cached",
                        db.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// What an offline repo answers for what it does not hold.
    fn offline_not_found(&self, what: &str) -> ProxyError {
        ProxyError::NotFound(format!(
            "not found: {what} is not stored in repo {}, which is offline (network_mode = \"offline\") and never asks its upstream",
            self.name
        ))
    }

    /// A stored copy of `module@version` holding `kind`, or the result of fetching it.
    pub async fn fetch(
        self: &Arc<Self>,
        store: &Arc<Store>,
        module: &str,
        version: &Version,
        kind: FileKind,
    ) -> Result<Arc<Manifest>, ProxyError> {
        self.refuse_version(module, version.as_str())?;
        if self.network_mode == NetworkMode::Offline {
            let mod_only_will_do = kind != FileKind::Zip;
            return stored(store, &self.name, module, version, mod_only_will_do)
                .await?
                .ok_or_else(|| self.offline_not_found(&format!("{module}@{version}")));
        }
        match kind {
            FileKind::Zip => self.ensure_full(store, module, version).await,
            FileKind::Info | FileKind::Mod => self.ensure_mod_only(store, module, version).await,
        }
    }

    /// The complete version, or its `@gomod` version: whichever is stored, else fetched.
    async fn ensure_mod_only(
        self: &Arc<Self>,
        store: &Arc<Store>,
        module: &str,
        version: &Version,
    ) -> Result<Arc<Manifest>, ProxyError> {
        if let Some(m) = stored(store, &self.name, module, version, true).await? {
            return Ok(m);
        }
        let key = VersionKey {
            module: module.to_owned(),
            version: version.to_string(),
            full: false,
        };
        let what = format!(
            "upstream fetch of {module}@{version} (.info, .mod) for repo {}",
            self.name
        );
        let (this, store, module, version) = (self.clone(), store.clone(), module.to_owned(), version.clone());
        let work_what = what.clone();
        Ok(self
            .versions
            .run(key, &what, self.fetch_timeout, move || async move {
                let flight = format!("go/{}/{module}@{version}/mod", this.name);
                across_replicas(
                    &store,
                    &flight,
                    &work_what,
                    this.fetch_timeout,
                    this.failure_ttl,
                    || stored(&store, &this.name, &module, &version, true),
                    || this.fetch_mod_only(&store, &module, &version, &work_what),
                )
                .await
            })
            .await?)
    }

    /// The complete version, stored or fetched.
    async fn ensure_full(
        self: &Arc<Self>,
        store: &Arc<Store>,
        module: &str,
        version: &Version,
    ) -> Result<Arc<Manifest>, ProxyError> {
        if let Some(m) = stored(store, &self.name, module, version, false).await? {
            return Ok(m);
        }
        let key = VersionKey {
            module: module.to_owned(),
            version: version.to_string(),
            full: true,
        };
        let what = format!("upstream fetch of {module}@{version} (.zip) for repo {}", self.name);
        let (this, store, module, version) = (self.clone(), store.clone(), module.to_owned(), version.clone());
        let work_what = what.clone();
        Ok(self
            .versions
            .run(key, &what, self.fetch_timeout, move || async move {
                let flight = format!("go/{}/{module}@{version}/zip", this.name);
                across_replicas(
                    &store,
                    &flight,
                    &work_what,
                    this.fetch_timeout,
                    this.failure_ttl,
                    || stored(&store, &this.name, &module, &version, false),
                    || this.fetch_full(&store, &module, &version, &work_what),
                )
                .await
            })
            .await?)
    }

    async fn fetch_mod_only(
        &self,
        store: &Store,
        module: &str,
        version: &Version,
        what: &str,
    ) -> Result<Arc<Manifest>, ProxyError> {
        // A flight that just finished may have committed it between the caller's look and now.
        if let Some(m) = stored(store, &self.name, module, version, true).await? {
            return Ok(m);
        }
        let deadline = Instant::now() + self.fetch_deadline;
        let info_rel = ProtocolPath::version_file(module, version.as_str(), "info")?;
        let mod_rel = ProtocolPath::version_file(module, version.as_str(), "mod")?;
        let mut failure = None;
        for entry in &self.upstream.entries {
            let source = &entry.source;
            let both = async {
                tokio::join!(
                    self.upstream.get_bytes(source, &info_rel, upstream::MAX_INFO),
                    self.upstream.get_bytes(source, &mod_rel, intact_go::zip::MAX_GO_MOD),
                )
            };
            let (info, go_mod) = self.before_deadline(deadline, what, both).await?;
            let mut checked = match (info, go_mod) {
                (Ok(info), Ok(go_mod)) => check_info_and_mod(source, module, version.as_str(), info, go_mod),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
                (Err(a), Err(b)) => Err(ProxyError::worst(Some(a), b)),
            };
            if let Ok((_, go_mod)) = &checked {
                let h1 = dirhash::hash_go_mod(go_mod);
                let sum = self.check_sum(store, source, module, version.as_str(), &h1, None);
                if let Err(e) = self.before_deadline(deadline, what, sum).await? {
                    checked = Err(e);
                }
            }
            match checked {
                Ok((info, go_mod)) => {
                    let metadata = json!({
                        "module": module,
                        "go_mod_h1": dirhash::hash_go_mod(&go_mod),
                        "source": "proxy",
                        "upstream": source.to_string(),
                    });
                    let files = vec![
                        (INFO_FILE, layout::pending_from_bytes(store, &info).await?),
                        (MOD_FILE, layout::pending_from_bytes(store, &go_mod).await?),
                    ];
                    let name = layout::gomod_name(module)?;
                    let committed = layout::commit(store, &self.name, &name, version, files, metadata).await?;
                    if let Committed::New(_) = committed {
                        tracing::info!(repo = %self.name, %module, %version, %source, "cached .info and .mod");
                    }
                    return Ok(committed.manifest().clone());
                }
                Err(e) if upstream::falls_through(entry, &e) => failure = Some(ProxyError::worst(failure, e)),
                Err(e) => return Err(e),
            }
        }
        Err(failure.unwrap_or_else(|| ProxyError::NotFound(format!("not found: {module}@{version}: no upstream"))))
    }

    async fn fetch_full(
        self: &Arc<Self>,
        store: &Arc<Store>,
        module: &str,
        version: &Version,
        what: &str,
    ) -> Result<Arc<Manifest>, ProxyError> {
        if let Some(m) = stored(store, &self.name, module, version, false).await? {
            return Ok(m);
        }
        let deadline = Instant::now() + self.fetch_deadline;
        // The zip downloads while .info/.mod are made sure of (usually already stored: the
        // go command asks for .mod long before it asks for .zip).
        let (mod_only, zip) = tokio::join!(
            self.ensure_mod_only(store, module, version),
            self.download_zip(module, version, deadline, what)
        );
        let mut mod_only = mod_only?;
        let (zip_path, source) = zip?;
        let checked = match check::zip_file(zip_path.to_path_buf(), module.to_owned(), version.to_string()).await {
            Ok(Ok(c)) => c,
            Ok(Err(intact_go::GoError::Io(e))) => {
                return Err(ProxyError::Internal(format!("reading downloaded zip: {e}")));
            }
            Ok(Err(e)) => {
                return Err(ProxyError::InvalidUpstream(format!(
                    "upstream {source} served an invalid zip for {module}@{version}; not cached: {e}"
                )));
            }
            Err(e) => return Err(ProxyError::Internal(e)),
        };
        // The stored .info and .mod are copied into the complete version; a copy whose bytes
        // were damaged or lost is dropped and fetched again (once), never copied on.
        let (info_bytes, go_mod_bytes) = match stored_info_and_mod(store, &mod_only, module, version).await {
            Err(ProxyError::LostBytes(why)) => {
                tracing::warn!(repo = %self.name, module, %version, %why, "a cached .info/.mod lost its bytes; fetching it again");
                store
                    .delete_version(
                        &mod_only.repo,
                        &mod_only.name,
                        &mod_only.version,
                        "a blob was damaged or missing; fetched again",
                    )
                    .await?;
                mod_only = self.ensure_mod_only(store, module, version).await?;
                stored_info_and_mod(store, &mod_only, module, version).await?
            }
            read => read?,
        };
        // Both files of the complete version are checked, the go.mod too: the stored copy it
        // comes from may predate the check, or have been stored under another configuration.
        let go_mod_h1 = dirhash::hash_go_mod(&go_mod_bytes);
        let sum = self.check_sum(store, &source, module, version.as_str(), &go_mod_h1, Some(&checked.h1));
        self.before_deadline(deadline, what, sum).await??;
        let zip_blob = {
            let mut file = tokio::fs::File::open(&zip_path)
                .await
                .map_err(|e| ProxyError::Internal(format!("reopening downloaded zip: {e}")))?;
            store.blobs().write(&mut file, None).await?
        };
        drop(zip_path);
        let metadata = json!({
            "module": module,
            "h1": checked.h1,
            "go_mod_h1": dirhash::hash_go_mod(&go_mod_bytes),
            "source": "proxy",
            "upstream": source.to_string(),
        });
        let files = vec![
            (INFO_FILE, layout::pending_from_bytes(store, &info_bytes).await?),
            (MOD_FILE, layout::pending_from_bytes(store, &go_mod_bytes).await?),
            (ZIP_FILE, zip_blob),
        ];
        let committed = layout::commit(
            store,
            &self.name,
            &layout::module_name(module)?,
            version,
            files,
            metadata,
        )
        .await?;
        if let Committed::New(m) = &committed {
            tracing::info!(repo = %self.name, %module, %version, %source, h1 = %checked.h1, bytes = m.total_size(), "cached module version");
        }
        Ok(committed.manifest().clone())
    }

    /// Downloads the zip into a temp file next to the blobs, trying the upstream list in order,
    /// until `deadline`.
    async fn download_zip(
        &self,
        module: &str,
        version: &Version,
        deadline: Instant,
        what: &str,
    ) -> Result<(tempfile::TempPath, Source), ProxyError> {
        let rel = ProtocolPath::version_file(module, version.as_str(), "zip")?;
        tokio::fs::create_dir_all(&self.tmp_dir)
            .await
            .map_err(|e| ProxyError::Internal(format!("creating {}: {e}", self.tmp_dir.display())))?;
        let mut failure = None;
        for entry in &self.upstream.entries {
            let tmp_dir = self.tmp_dir.clone();
            let temp =
                tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("go-zip-").tempfile_in(tmp_dir))
                    .await
                    .map_err(|e| ProxyError::Internal(format!("temp file task: {e}")))?
                    .map_err(|e| ProxyError::Internal(format!("creating temp file: {e}")))?;
            let (std_file, path) = temp.into_parts();
            let mut file = tokio::fs::File::from_std(std_file);
            let download = self
                .upstream
                .get_to_file(&entry.source, &rel, &mut file, intact_go::zip::MAX_ZIP_FILE);
            match self.before_deadline(deadline, what, download).await? {
                Ok(_) => return Ok((path, entry.source.clone())),
                Err(e) if upstream::falls_through(entry, &e) => failure = Some(ProxyError::worst(failure, e)),
                Err(e) => return Err(e),
            }
        }
        Err(failure.unwrap_or_else(|| ProxyError::NotFound(format!("not found: {module}@{version}: no upstream"))))
    }

    /// Versions of `module` this repo serves: upstream's `list` merged with what is stored,
    /// without the versions its rules refuse. When the upstream fails (an outage, not "not
    /// here"), `fallback` answers with the stored versions and `strict` with the failure;
    /// `offline` never asks.
    pub async fn list(self: &Arc<Self>, store: &Store, module: &str) -> Result<Vec<String>, ProxyError> {
        self.refuse_module(module)?;
        let stored = layout::stored_versions(store, &self.name, module).await?;
        let merged = if self.network_mode == NetworkMode::Offline {
            // Offline, a `.mod`-only copy could never get its zip: only complete versions.
            let stored = layout::complete_versions(store, &self.name, module).await?;
            if stored.is_empty() {
                return Err(self.offline_not_found(&format!("{module}: no version")));
            }
            versions::merge([stored])
        } else {
            match self.upstream_meta(module, Meta::List).await {
                Ok(body) => versions::merge([versions::parse_list(&body), stored]),
                // "Not here" upstream is an answer, merged with what is stored in every mode.
                Err(e) if (self.network_mode == NetworkMode::Fallback || e.is_not_found()) && !stored.is_empty() => {
                    tracing::debug!(repo = %self.name, %module, error = %e, "upstream list failed; serving stored versions");
                    versions::merge([stored])
                }
                Err(e) => return Err(e),
            }
        };
        if self.rules.is_empty() {
            return Ok(merged);
        }
        Ok(merged
            .into_iter()
            .filter(|v| self.rules.check_version(module, v).is_ok())
            .collect())
    }

    /// `@latest`: the upstream's answer, else the latest stored version's `.info` (when the
    /// upstream has none, when it fails in `fallback` mode, and always when `offline`). When the rules refuse that version,
    /// the latest version they allow is the answer.
    pub async fn latest(self: &Arc<Self>, store: &Arc<Store>, module: &str) -> Result<(Vec<u8>, String), ProxyError> {
        self.refuse_module(module)?;
        let offline = self.network_mode == NetworkMode::Offline;
        let from_store = || async {
            stored_latest(store, &self.name, module, true, offline)
                .await?
                .ok_or_else(|| self.offline_not_found(&format!("{module}: no version")))
        };
        let answer = if offline {
            from_store().await?
        } else {
            match self.upstream_meta(module, Meta::Latest).await {
                Ok(body) => {
                    let info = intact_go::info::parse_info(&body).map_err(|e| ProxyError::Internal(e.to_string()))?;
                    (body.as_ref().clone(), info.version)
                }
                Err(e) if self.network_mode == NetworkMode::Fallback || e.is_not_found() => match from_store().await {
                    Ok(found) => {
                        tracing::debug!(repo = %self.name, %module, error = %e, "upstream @latest failed; serving the latest stored version");
                        found
                    }
                    // Nothing stored: the upstream's answer. A store that failed is its own
                    // (5xx) answer, never turned into "not found".
                    Err(stored) if stored.is_not_found() => return Err(e),
                    Err(stored) => return Err(stored),
                },
                Err(e) => return Err(e),
            }
        };
        let Err(refused) = self.refuse_version(module, &answer.1) else {
            return Ok(answer);
        };
        let allowed = self.list(store, module).await?;
        let Some(best) = semver::latest(allowed.iter().map(String::as_str)) else {
            return Err(refused);
        };
        let version = layout::version(best)?;
        let m = self.fetch(store, module, &version, FileKind::Info).await?;
        let info = m
            .file(INFO_FILE)
            .ok_or_else(|| ProxyError::Internal(format!("stored {module}@{best} lacks its .info")))?;
        Ok((layout::read_small(store, info).await?, best.to_owned()))
    }

    /// A version query that is not a canonical version (`@v/master.info`): asked upstream
    /// every time and not stored, since its answer changes as the branch moves.
    pub async fn query_info(&self, module: &str, query: &str) -> Result<Vec<u8>, ProxyError> {
        self.refuse_module(module)?;
        if self.network_mode == NetworkMode::Offline {
            return Err(self.offline_not_found(&format!(
                "{module}@{query} (a query, which only the upstream can answer)"
            )));
        }
        let rel = ProtocolPath::version_file(module, query, "info")?;
        let what = format!("upstream query {module}@{query} for repo {}", self.name);
        let deadline = Instant::now() + self.fetch_deadline;
        let mut failure = None;
        for entry in &self.upstream.entries {
            let got = self
                .before_deadline(
                    deadline,
                    &what,
                    self.upstream.get_bytes(&entry.source, &rel, upstream::MAX_INFO),
                )
                .await?
                .and_then(|body| {
                    let info = intact_go::info::parse_info(&body).map_err(|e| {
                        ProxyError::InvalidUpstream(format!(
                            "upstream {} served an invalid .info for {module}@{query}: {e}",
                            entry.source
                        ))
                    })?;
                    Ok((body, info.version))
                });
            match got {
                Ok((body, version)) => {
                    self.refuse_version(module, &version)?;
                    return Ok(body);
                }
                Err(e) if upstream::falls_through(entry, &e) => failure = Some(ProxyError::worst(failure, e)),
                Err(e) => return Err(e),
            }
        }
        Err(failure.unwrap_or_else(|| ProxyError::NotFound(format!("not found: {module}@{query}: no upstream"))))
    }

    /// An upstream `list` or `@latest` body: cached for `list_ttl`, single-flight, failures
    /// remembered like version fetches.
    async fn upstream_meta(self: &Arc<Self>, module: &str, meta: Meta) -> Result<Arc<Vec<u8>>, ProxyError> {
        let key = MetaKey {
            module: module.to_owned(),
            meta,
        };
        if let Some(body) = self.meta_cache.get(&key) {
            return Ok(body);
        }
        let what = match meta {
            Meta::List => format!("upstream list of {module} for repo {}", self.name),
            Meta::Latest => format!("upstream @latest of {module} for repo {}", self.name),
        };
        let this = self.clone();
        let work_what = what.clone();
        Ok(self
            .meta
            .run(key.clone(), &what, self.fetch_timeout, move || async move {
                let body = Arc::new(this.fetch_meta(&key, &work_what).await?);
                this.meta_cache.insert(key, body.clone());
                Ok(body)
            })
            .await?)
    }

    async fn fetch_meta(&self, key: &MetaKey, what: &str) -> Result<Vec<u8>, ProxyError> {
        let (rel, cap) = match key.meta {
            Meta::List => (ProtocolPath::list(&key.module)?, upstream::MAX_LIST),
            Meta::Latest => (ProtocolPath::latest(&key.module)?, upstream::MAX_INFO),
        };
        let deadline = Instant::now() + self.fetch_deadline;
        let mut failure = None;
        for entry in &self.upstream.entries {
            let got = self
                .before_deadline(deadline, what, self.upstream.get_bytes(&entry.source, &rel, cap))
                .await?
                .and_then(|body| {
                    if key.meta == Meta::Latest {
                        intact_go::info::parse_info(&body).map_err(|e| {
                            ProxyError::InvalidUpstream(format!(
                                "upstream {} served an invalid @latest for {}: {e}",
                                entry.source, key.module
                            ))
                        })?;
                    }
                    Ok(body)
                });
            match got {
                Ok(body) => return Ok(body),
                Err(e) if upstream::falls_through(entry, &e) => failure = Some(ProxyError::worst(failure, e)),
                Err(e) => return Err(e),
            }
        }
        Err(failure.unwrap_or_else(|| ProxyError::NotFound(format!("not found: {}: no upstream", key.module))))
    }
}

/// The stored `.info` and `.mod` bytes of `m` (checked against their digests).
async fn stored_info_and_mod(
    store: &Store,
    m: &Manifest,
    module: &str,
    version: &Version,
) -> Result<(Vec<u8>, Vec<u8>), ProxyError> {
    let (Some(info), Some(go_mod)) = (m.file(INFO_FILE), m.file(MOD_FILE)) else {
        return Err(ProxyError::Internal(format!(
            "stored {module}@{version} lacks .info or .mod"
        )));
    };
    Ok((
        layout::read_small(store, info).await?,
        layout::read_small(store, go_mod).await?,
    ))
}

fn check_info_and_mod(
    source: &Source,
    module: &str,
    version: &str,
    info: Vec<u8>,
    go_mod: Vec<u8>,
) -> Result<(Vec<u8>, Vec<u8>), ProxyError> {
    check::info_for(&info, version).map_err(|why| {
        ProxyError::InvalidUpstream(format!(
            "upstream {source} served an invalid .info for {module}@{version}; not cached: {why}"
        ))
    })?;
    check::go_mod_for(&go_mod, module).map_err(|why| {
        ProxyError::InvalidUpstream(format!(
            "upstream {source} served an invalid .mod for {module}@{version}; not cached: {why}"
        ))
    })?;
    Ok((info, go_mod))
}

/// The stored complete version, or (with `mod_only_will_do`) the `@gomod` one.
async fn stored(
    store: &Store,
    repo: &RepoName,
    module: &str,
    version: &Version,
    mod_only_will_do: bool,
) -> Result<Option<Arc<Manifest>>, ProxyError> {
    if let Some(m) = store.has_version(repo, &layout::module_name(module)?, version).await? {
        return Ok(Some(m));
    }
    if mod_only_will_do {
        return Ok(store.has_version(repo, &layout::gomod_name(module)?, version).await?);
    }
    Ok(None)
}

/// The `.info` of the latest stored version (release, else prerelease, else pseudo-version),
/// of the complete versions only with `complete_only`.
pub async fn stored_latest(
    store: &Store,
    repo: &RepoName,
    module: &str,
    is_proxy: bool,
    complete_only: bool,
) -> Result<Option<(Vec<u8>, String)>, ProxyError> {
    let stored = if complete_only {
        layout::complete_versions(store, repo, module).await?
    } else {
        layout::stored_versions(store, repo, module).await?
    };
    let Some(latest) = semver::latest(stored.iter().map(String::as_str)) else {
        return Ok(None);
    };
    let version = layout::version(latest)?;
    match layout::find(store, repo, module, &version, FileKind::Info, is_proxy).await? {
        Some(found) => Ok(Some((layout::read_small(store, &found.file).await?, latest.to_owned()))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> MetaKey {
        MetaKey {
            module: format!("example.com/m{i}"),
            meta: Meta::List,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_list_cache_forgets_stale_answers_and_stays_bounded() {
        let cache = MetaCache::new(Duration::from_secs(60));
        for i in 0..1000 {
            cache.insert(key(i), Arc::new(b"v1.0.0\n".to_vec()));
        }
        assert_eq!(cache.held(), (1000, 7000));
        assert!(cache.get(&key(1)).is_some());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(cache.get(&key(1)).is_none(), "stale answers are not served");
        cache.insert(key(5000), Arc::new(b"v1.0.0\n".to_vec()));
        assert_eq!(cache.held(), (1, 7), "stale answers are dropped, not kept");
        // Big answers: never more than the byte budget.
        let big = Arc::new(vec![b'v'; META_CACHE_BYTES / 8]);
        for i in 0..40 {
            cache.insert(key(i), big.clone());
            let (_, bytes) = cache.held();
            assert!(bytes <= META_CACHE_BYTES, "{bytes} bytes held");
        }
        cache.insert(key(99), Arc::new(vec![b'v'; META_CACHE_BYTES / 2]));
        assert!(cache.get(&key(99)).is_none(), "too big to cache");
    }
}
