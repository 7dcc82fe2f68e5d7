//! How Go module versions live in the store.
//!
//! * A complete module version is **one** intact version: name = the module path (case
//!   preserved), version = the canonical Go version, files `info.json` (the `.info`),
//!   `go.mod` (the `.mod`) and `module.zip` (the `.zip`). One catalog commit makes all
//!   three visible, so nothing ever asks "do all three files exist" (Athens #1841).
//! * `.info` + `.mod` fetched without the zip (the go command reads many go.mod files while
//!   resolving the module graph and never downloads most of those zips) are another immutable
//!   version under the internal name `@gomod/<module path>`. Browsing hides `@` names.
//!
//! File paths are fixed names rather than `{version}.zip`: intact's file-path grammar has no
//! `+`, and fixed names keep the generic API (`.../@v/{version}/go.mod`) predictable.

use std::sync::Arc;

use intact_core::{FileEntry, FilePath, Manifest, Name, RepoName, Timestamp, Version};
use intact_store::store::BeginRequest;
use intact_store::{CommitOutcome, PendingBlob, Store, VersionSpec};
use tokio::io::AsyncReadExt;

use super::error::ProxyError;
use super::request::FileKind;

pub const INFO_FILE: &str = "info.json";
pub const MOD_FILE: &str = "go.mod";
pub const ZIP_FILE: &str = "module.zip";

/// How long a commit waits for another fetch committing the same version.
pub const COMMIT_WAIT_SECONDS: u64 = 30;

/// The internal namespace of `.info`+`.mod`-only versions.
pub const GOMOD_PREFIX: &str = "@gomod/";

pub fn file_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Info => INFO_FILE,
        FileKind::Mod => MOD_FILE,
        FileKind::Zip => ZIP_FILE,
    }
}

fn too_long(module: &str, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::NotFound(format!(
        "not found: module path {module:?} cannot be stored by intact: {e}"
    ))
}

/// The name a module's complete versions are stored under. `module` passed Go's grammar.
pub fn module_name(module: &str) -> Result<Name, ProxyError> {
    Name::parse_internal(module).map_err(|e| too_long(module, e))
}

/// The name of a module's `.info`+`.mod`-only versions.
pub fn gomod_name(module: &str) -> Result<Name, ProxyError> {
    Name::parse_internal(&format!("{GOMOD_PREFIX}{module}")).map_err(|e| too_long(module, e))
}

pub fn version(v: &str) -> Result<Version, ProxyError> {
    Version::parse(v)
        .map_err(|e| ProxyError::NotFound(format!("not found: version {v:?} cannot be stored by intact: {e}")))
}

/// A stored file and when its version was committed.
#[derive(Debug, Clone)]
pub struct Found {
    pub manifest: Arc<Manifest>,
    pub file: FileEntry,
}

impl Found {
    pub fn committed_at(&self) -> Timestamp {
        self.manifest.created_at
    }
}

/// Finds `kind` of `module@version` in `repo`: the complete version first, then (for `.info`
/// and `.mod`) the `@gomod` version.
/// `mod_only_is_a_copy`: whether `repo` is a proxy repo, whose complete versions hold copies
/// of their `.info`+`.mod`-only version's files.
pub async fn find(
    store: &Store,
    repo: &RepoName,
    module: &str,
    version: &Version,
    kind: FileKind,
    mod_only_is_a_copy: bool,
) -> Result<Option<Found>, ProxyError> {
    let mut names = vec![module_name(module)?];
    if kind != FileKind::Zip {
        names.push(gomod_name(module)?);
    }
    // In a proxy repo, memory first, for either name: the `.info` and `.mod` of a complete
    // version are copies of its `.info`+`.mod`-only version's (the proxy fetches those first
    // and copies them), so either answers with the same bytes. Asking the catalog in order
    // instead costs every `.mod` of a version whose zip was never fetched (most of what the
    // go command asks for while it walks the module graph) a catalog round trip to learn that
    // the complete version is not there. Elsewhere (a hosted repo that was a proxy once) the
    // complete version's files come first, as below.
    let remembered: &[Name] = if mod_only_is_a_copy { &names } else { &names[..1] };
    for name in remembered {
        if let Some(m) = store.remembered_version(repo, name, version)
            && let Some(f) = m.file(file_name(kind))
        {
            return Ok(Some(Found {
                file: f.clone(),
                manifest: m,
            }));
        }
    }
    for name in names {
        if let Some(m) = store.has_version(repo, &name, version).await?
            && let Some(f) = m.file(file_name(kind))
        {
            return Ok(Some(Found {
                file: f.clone(),
                manifest: m,
            }));
        }
    }
    Ok(None)
}

/// Every version of `module` stored in `repo`, complete or `.mod`-only (unsorted; a version
/// both complete and `.mod`-only is there twice: the `list` answer sorts and dedupes anyway).
pub async fn stored_versions(store: &Store, repo: &RepoName, module: &str) -> Result<Vec<String>, ProxyError> {
    let mut out = store.version_names(repo, &module_name(module)?).await?;
    out.extend(store.version_names(repo, &gomod_name(module)?).await?);
    Ok(out.into_iter().map(Version::into_string).collect())
}

/// Every complete version (with its zip) of `module` stored in `repo` (unsorted).
pub async fn complete_versions(store: &Store, repo: &RepoName, module: &str) -> Result<Vec<String>, ProxyError> {
    let out = store.version_names(repo, &module_name(module)?).await?;
    Ok(out.into_iter().map(Version::into_string).collect())
}

/// Reads a small stored file (`.info`, `.mod`) into memory.
pub async fn read_small(store: &Store, file: &FileEntry) -> Result<Vec<u8>, ProxyError> {
    if file.size > intact_go::zip::MAX_GO_MOD {
        return Err(ProxyError::Internal(format!(
            "stored {} is unexpectedly large ({} bytes)",
            file.path, file.size
        )));
    }
    let read = store.read_file(file, None).await?;
    let mut buf = Vec::with_capacity(file.size as usize);
    read.body
        .take(file.size + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| ProxyError::Internal(format!("reading stored {}: {e}", file.path)))?;
    // These bytes are served, or copied into another version under a digest of their own:
    // checked like any whole read, so damage is quarantined and never passed on as right.
    let actual = intact_core::Digest::of(&buf);
    if actual != file.sha256 || buf.len() as u64 != file.size {
        let detail = format!(
            "blob {} is damaged: {} bytes hashing to {actual}",
            file.sha256,
            buf.len()
        );
        store.quarantine(&file.sha256, &detail).await?;
        return Err(intact_store::Error::BlobDamaged {
            digest: file.sha256,
            detail,
        }
        .into());
    }
    Ok(buf)
}

/// Streams small in-memory content into a pending blob.
pub async fn pending_from_bytes(store: &Store, bytes: &[u8]) -> Result<PendingBlob, ProxyError> {
    let mut reader = bytes;
    Ok(store.blobs().write(&mut reader, None).await?)
}

/// What committing a version found.
#[derive(Debug)]
pub enum Committed {
    /// This call made the version visible.
    New(Arc<Manifest>),
    /// The version already existed (committed by someone else, maybe with other content).
    Existing(Arc<Manifest>),
}

impl Committed {
    pub fn manifest(&self) -> &Arc<Manifest> {
        match self {
            Self::New(m) | Self::Existing(m) => m,
        }
    }
}

/// Commits `files` as `repo/name@version` in one catalog transaction. A version that already
/// exists is returned as it is: versions are immutable, and the first commit wins.
pub async fn commit(
    store: &Store,
    repo: &RepoName,
    name: &Name,
    version: &Version,
    files: Vec<(&'static str, PendingBlob)>,
    metadata: serde_json::Value,
) -> Result<Committed, ProxyError> {
    let files = files.into_iter().map(|(p, b)| (p.to_owned(), b)).collect();
    commit_paths(store, repo, name, version, files, metadata).await
}

/// [`commit`], with paths built at run time.
pub async fn commit_paths(
    store: &Store,
    repo: &RepoName,
    name: &Name,
    version: &Version,
    files: Vec<(String, PendingBlob)>,
    metadata: serde_json::Value,
) -> Result<Committed, ProxyError> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, blob) in files {
        let path = FilePath::parse(&path).map_err(|e| ProxyError::Internal(e.to_string()))?;
        staged.push((path, blob));
    }
    let req = BeginRequest {
        repo: repo.clone(),
        name: name.clone(),
        version: VersionSpec::Exact(version.clone()),
        metadata,
        // Renewed while this commits (publish_pending): a replica dying mid-commit frees the
        // version within one short lease.
        lease: Some(intact_store::WORKER_LEASE),
        idempotency_key: None,
        wait: std::time::Duration::from_secs(COMMIT_WAIT_SECONDS),
        base: None,
    };
    match store.publish_pending(req, staged).await {
        Ok(CommitOutcome::Committed(m)) => Ok(Committed::New(Arc::new(m))),
        Ok(CommitOutcome::AlreadyCommitted(m)) => Ok(Committed::Existing(Arc::new(m))),
        Err(intact_store::Error::Conflict { .. }) => {
            Ok(Committed::Existing(store.manifest(repo, name, version).await?))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_case_and_tilde() {
        assert_eq!(
            module_name("github.com/Azure/go-thing").map(Name::into_string).ok(),
            Some("github.com/Azure/go-thing".into())
        );
        assert_eq!(
            module_name("example.com/a~b").map(Name::into_string).ok(),
            Some("example.com/a~b".into())
        );
        let g = gomod_name("example.com/a").expect("name");
        assert!(g.is_internal());
        assert_eq!(g.as_str(), "@gomod/example.com/a");
        assert!(
            module_name(&format!("example.com/{}", "a".repeat(300)))
                .expect_err("long")
                .is_not_found()
        );
        assert!(
            FilePath::parse(INFO_FILE).is_ok()
                && FilePath::parse(MOD_FILE).is_ok()
                && FilePath::parse(ZIP_FILE).is_ok()
        );
    }

    /// A hosted repo that holds a `.info`+`.mod`-only version too (it was a proxy once) answers
    /// with its complete version's files even when only the other is in memory: only in a
    /// proxy repo are the two copies of each other.
    #[tokio::test]
    async fn outside_a_proxy_repo_the_complete_version_answers_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_local(dir.path(), intact_store::StoreConfig::default())
            .await
            .expect("store");
        let repo = RepoName::parse("go-private").expect("repo");
        let module = "example.com/m";
        let v = version("v1.0.0").expect("version");
        let info = |time: &str| format!("{{\"Version\":\"v1.0.0\",\"Time\":\"{time}\"}}");
        let (published, fetched) = (info("2024-02-02T00:00:00Z"), info("2024-01-01T00:00:00Z"));
        let commit_with = |name: Name, info: String| {
            let (store, repo, v) = (store.clone(), repo.clone(), v.clone());
            async move {
                let files = vec![
                    (
                        INFO_FILE,
                        pending_from_bytes(&store, info.as_bytes()).await.expect("info"),
                    ),
                    (
                        MOD_FILE,
                        pending_from_bytes(&store, b"module example.com/m\n")
                            .await
                            .expect("mod"),
                    ),
                ];
                commit(&store, &repo, &name, &v, files, serde_json::json!({}))
                    .await
                    .expect("commit");
            }
        };
        commit_with(module_name(module).expect("name"), published.clone()).await;
        commit_with(gomod_name(module).expect("name"), fetched.clone()).await;
        // Only the `.info`+`.mod`-only version in memory.
        store.invalidate(&repo, &module_name(module).expect("name"), &v);
        store
            .has_version(&repo, &gomod_name(module).expect("name"), &v)
            .await
            .expect("lookup")
            .expect("stored");

        let found = find(&store, &repo, module, &v, FileKind::Info, false)
            .await
            .expect("find")
            .expect("found");
        assert_eq!(found.file.sha256, intact_core::Digest::of(published.as_bytes()));
        assert_eq!(found.manifest.name, module_name(module).expect("name"));
    }
}
