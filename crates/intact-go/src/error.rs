//! The one error type of this crate: each variant is an outcome a caller branches on.

use std::fmt;

/// Which grammar a path was checked against (module, import or file path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A module path, `module.CheckPath`.
    Module,
    /// A package import path, `module.CheckImportPath`.
    Import,
    /// A file path inside a module, `module.CheckFilePath`.
    File,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Module => "module",
            PathKind::Import => "import",
            PathKind::File => "file",
        })
    }
}

/// Everything that can go wrong in this crate.
///
/// `InvalidPath`, `InvalidVersion`, `InvalidZip`, `InvalidGoMod`, `InvalidInfo` and `TooLarge`
/// are about the input (a 4xx for an HTTP front-end); `Io` is about the machine (a 5xx).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    /// A module, import or file path (or an escaped form of one) breaks Go's rules.
    #[error("malformed {kind} path {path:?}: {reason}")]
    InvalidPath {
        kind: PathKind,
        path: String,
        reason: String,
    },

    /// A version string is not a valid (or fitting) version.
    #[error("invalid version {version:?}: {reason}")]
    InvalidVersion { version: String, reason: String },

    /// A module zip breaks the rules of `golang.org/x/mod/zip`, or a directory cannot become one.
    #[error("invalid module zip: {reason}")]
    InvalidZip { reason: String },

    /// A go.mod file could not be understood.
    #[error("invalid go.mod: {reason}")]
    InvalidGoMod { reason: String },

    /// A `.info` document is not what the proxy protocol requires.
    #[error("invalid version info: {reason}")]
    InvalidInfo { reason: String },

    /// Something exceeds one of Go's size limits.
    #[error("{what} too large (limit is {limit} bytes)")]
    TooLarge { what: String, limit: u64 },

    /// Reading or writing failed for reasons that are not the input's fault.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl GoError {
    pub(crate) fn path(kind: PathKind, path: &str, reason: impl Into<String>) -> Self {
        GoError::InvalidPath {
            kind,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn version(version: &str, reason: impl Into<String>) -> Self {
        GoError::InvalidVersion {
            version: version.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn zip(reason: impl Into<String>) -> Self {
        GoError::InvalidZip { reason: reason.into() }
    }
}
