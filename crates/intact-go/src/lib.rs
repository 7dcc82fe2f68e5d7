//! The Go module protocol, as pure logic: module paths and their `!` escaping, semantic and
//! pseudo-versions, module zips, go.sum `h1:` hashes, go.mod and `.info` parsing, and
//! GOPRIVATE-style patterns, a proxy's allow/deny rules, and the checksum database's signed
//! notes and verified log.
//!
//! Every rule here follows `golang.org/x/mod` (and the go command where x/mod is silent),
//! because a proxy that disagrees with the go command serves modules the go command refuses
//! or, worse, accepts modules that it would refuse. Where this crate is deliberately
//! stricter, the item's documentation says so. Nothing here does network IO or needs an
//! async runtime; the zip functions take readers, writers and directories.

pub mod dirhash;
mod error;
pub mod gomod;
pub mod info;
pub mod module_path;
pub mod pattern;
pub mod rules;
pub mod semver;
pub mod sumdb;
pub mod zip;

pub use error::{GoError, PathKind};
