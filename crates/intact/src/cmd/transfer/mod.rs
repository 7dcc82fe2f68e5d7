//! Air-gapped transfer (docs/transfer.md): `intact export` writes a repo's versions as of
//! one commit into a tar, `intact import` commits them into another server.

pub mod archive;
pub mod export;
pub mod import;
