//! `POST /api/v1/transactions/{id}/import`: import by path. Files already on a filesystem
//! the server reads are staged into a transaction without their bytes crossing the network,
//! cloned, linked, moved or copied into the blob store (`intact_store::blob::adopt`).
//!
//! A source is taken only from inside `[import] allowed_roots` (none by default: the route
//! is then refused). Its path is resolved (symlinks, `..`) and checked against the canonical
//! roots; then its directory is opened and checked again through the descriptor itself
//! (`/proc/self/fd`), and the file opened relative to that descriptor without following a
//! symlink, so swapping a directory or the file for a symlink between the check and the open
//! cannot lead outside the roots. Only regular files are taken.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intact_core::{Digest, FilePath, TxnId};
use intact_store::{ImportMode, LocalSource};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The most files one request may import.
pub const MAX_FILES: usize = 10_000;

/// Files to import into the transaction.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRequest {
    /// 1 to 10,000 files.
    files: Vec<ImportFile>,
    /// How the bytes come into the store (default `auto`: reflink, else an immutable
    /// hardlink, else copy; never `move`).
    #[serde(default)]
    mode: ImportMode,
}

/// One file to import.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportFile {
    /// The file's path in the version.
    path: String,
    /// The file's absolute path as the server sees it, inside `[import] allowed_roots`.
    source: String,
    /// The sha256 (hex) the file must have: checked against the bytes the store holds,
    /// refused (and nothing staged) when they differ.
    #[serde(default)]
    sha256: Option<String>,
}

/// The files staged, in the order asked.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ImportAnswer {
    files: Vec<ImportedFile>,
}

/// A file staged by import.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ImportedFile {
    path: FilePath,
    size: u64,
    sha256: Digest,
    /// How its bytes came in (`auto` resolved).
    mode: ImportMode,
}

/// A file of the request, checked.
struct Checked {
    path: FilePath,
    source: String,
    sha256: Option<Digest>,
}

pub(crate) async fn import(
    State(state): State<AppState>,
    id: Result<UrlPath<String>, PathRejection>,
    body: Result<Json<ImportRequest>, JsonRejection>,
) -> ApiResult<Response> {
    if state.import_roots.is_empty() {
        return Err(ApiError::Coded {
            status: StatusCode::FORBIDDEN,
            code: "import_disabled",
            message: "import by path is off on this server: its [import] allowed_roots lists no directory".to_owned(),
        });
    }
    let UrlPath(id) = id?;
    let id = TxnId::parse(&id)?;
    let Json(req) = body?;
    let files = check(req.files)?;
    let max_file_bytes = state.limits.settings.max_file_bytes;
    let mut staged = Vec::with_capacity(files.len());
    for file in files {
        let (roots, excluded) = (state.import_roots.clone(), state.import_excluded.clone());
        let shown = file.source.clone();
        let source = tokio::task::spawn_blocking(move || open_source(&roots, &excluded, shown))
            .await
            .map_err(|e| ApiError::Internal(format!("opening an import source: {e}")))??;
        let size = source
            .file
            .metadata()
            .map_err(|e| ApiError::Internal(format!("reading {}: {e}", file.source)))?
            .len();
        if let Some(max) = max_file_bytes
            && size > max
        {
            return Err(ApiError::bad(
                "files",
                format!(
                    "{} is {size} bytes, over limits.max_file_bytes ({max}); nothing of it was staged",
                    file.source
                ),
            ));
        }
        let (entry, mode) = state
            .store
            .import_file(&id, file.path, source, req.mode, file.sha256, max_file_bytes)
            .await?;
        staged.push(ImportedFile {
            path: entry.path,
            size: entry.size,
            sha256: entry.sha256,
            mode,
        });
    }
    Ok((StatusCode::CREATED, Json(ImportAnswer { files: staged })).into_response())
}

/// Validates every entry before any file is touched: a bad one refuses the whole request.
fn check(files: Vec<ImportFile>) -> ApiResult<Vec<Checked>> {
    if files.is_empty() {
        return Err(ApiError::bad("files", "lists no file"));
    }
    if files.len() > MAX_FILES {
        return Err(ApiError::bad(
            "files",
            format!("at most {MAX_FILES} files per request ({} sent)", files.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut checked = Vec::with_capacity(files.len());
    for (i, f) in files.into_iter().enumerate() {
        let path = FilePath::parse(&f.path)
            .map_err(|e| ApiError::bad("files", format!("files[{i}].path {:?}: {}", f.path, e.rule)))?;
        if !seen.insert(path.as_str().to_owned()) {
            return Err(ApiError::bad(
                "files",
                format!("files[{i}].path {path} is listed twice"),
            ));
        }
        if !Path::new(&f.source).is_absolute() || f.source.contains('\0') {
            return Err(ApiError::bad(
                "files",
                format!(
                    "files[{i}].source {:?} must be an absolute path as the server sees it",
                    f.source
                ),
            ));
        }
        let sha256 = f
            .sha256
            .as_deref()
            .map(|text| {
                Digest::parse(text.trim()).map_err(|e| {
                    ApiError::bad(
                        "files",
                        format!("files[{i}].sha256 {text:?} is not a sha256: {}", e.rule),
                    )
                })
            })
            .transpose()?;
        checked.push(Checked {
            path,
            source: f.source,
            sha256,
        });
    }
    Ok(checked)
}

/// A source outside the roots (or one the server may not read): 403 naming it and why.
fn forbidden(message: String) -> ApiError {
    ApiError::Coded {
        status: StatusCode::FORBIDDEN,
        code: "import_forbidden",
        message,
    }
}

/// Resolves, checks and opens the source `shown` (blocking): see the module's comment.
fn open_source(roots: &[PathBuf], excluded: &[PathBuf], shown: String) -> ApiResult<LocalSource> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let unreadable = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::bad("files", format!("{shown}: no such file")),
        std::io::ErrorKind::PermissionDenied => forbidden(format!("{shown}: the server may not read it ({e})")),
        _ => ApiError::bad("files", format!("{shown}: cannot be opened ({e})")),
    };
    let canonical = std::fs::canonicalize(&shown).map_err(unreadable)?;
    let within = |path: &Path| {
        roots.iter().any(|root| path.starts_with(root)) && !excluded.iter().any(|own| path.starts_with(own))
    };
    if !within(&canonical) {
        let why = match excluded.iter().any(|own| canonical.starts_with(own)) {
            true => "is among the server's own files (its data dir), never imported",
            false => "is outside [import] allowed_roots",
        };
        return Err(forbidden(format!(
            "{shown} (resolved to {}) {why}",
            canonical.display()
        )));
    }
    let (Some(parent), Some(name)) = (canonical.parent(), canonical.file_name()) else {
        return Err(ApiError::bad("files", format!("{shown}: not a regular file")));
    };
    let dir: OwnedFd = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unreadable(e.into()))?;
    // Where the opened directory really is: a directory on the way swapped for a symlink
    // since the path was resolved would show here.
    let opened_at = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|e| ApiError::Internal(format!("checking where {shown} was opened (needs /proc): {e}")))?;
    if !within(&opened_at) {
        return Err(forbidden(format!(
            "{shown}: its directory was moved outside [import] allowed_roots while it was being opened"
        )));
    }
    // The kernel's pseudo filesystems hold no renders but the server's own secrets
    // (`/proc/self/environ`: its environment, S3 keys included) and live state: never sources,
    // whatever root covers them.
    let fs = rustix::fs::fstatfs(&dir).map_err(|e| unreadable(e.into()))?;
    if let Some(pseudo) = pseudo_filesystem(i128::from(fs.f_type)) {
        return Err(forbidden(format!(
            "{shown}: is on {pseudo}, a kernel pseudo filesystem, never imported"
        )));
    }
    // Looked at before it is opened: opening a device or a FIFO can have effects of its own.
    let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| unreadable(e.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(ApiError::bad(
            "files",
            format!("{shown}: not a regular file (it is a {})", describe(kind)),
        ));
    }
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => forbidden(format!("{shown}: became a symbolic link while it was being opened")),
        other => unreadable(other.into()),
    })?;
    let file = File::from(fd);
    let opened = rustix::fs::fstat(&file).map_err(|e| unreadable(e.into()))?;
    // The file opened is the one looked at (not one swapped in between).
    if (opened.st_dev, opened.st_ino) != (stat.st_dev, stat.st_ino)
        || FileType::from_raw_mode(opened.st_mode) != FileType::RegularFile
    {
        return Err(ApiError::bad(
            "files",
            format!("{shown}: was replaced while it was being opened; try again"),
        ));
    }
    Ok(LocalSource {
        dir,
        name: name.to_owned(),
        file,
        shown,
    })
}

/// The name of the kernel pseudo filesystem with magic number `f_type` (statfs(2)), if it is
/// one.
fn pseudo_filesystem(f_type: i128) -> Option<&'static str> {
    const PSEUDO: [(i128, &str); 10] = [
        (0x9fa0, "procfs"),
        (0x6265_6572, "sysfs"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x7363_6673, "securityfs"),
        (0x6367_7270, "cgroup2"),
        (0x0027_e0eb, "cgroup"),
        (0x1cd1, "devpts"),
        (0xcafe_4a11, "bpffs"),
        (0xde5e_81e4, "efivarfs"),
    ];
    PSEUDO.iter().find(|(magic, _)| *magic == f_type).map(|(_, name)| *name)
}

fn describe(kind: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match kind {
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "special file",
    }
}
