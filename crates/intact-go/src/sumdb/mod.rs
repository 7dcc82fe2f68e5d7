//! The Go checksum database (`sum.golang.org` and databases like it), as the go command
//! reads it: signed notes ([`note`]) and the tamper-evident log of go.sum records, read out
//! of tiles verified against a signed tree head ([`tlog`]).

pub mod note;
pub mod tlog;
