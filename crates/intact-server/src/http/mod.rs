//! The HTTP layer every front-end (the artifact API, the Go proxy, staging) stands on: who
//! is calling (address, token), and what each request is allowed to do.

pub mod auth;
pub mod caller;
pub mod reply;
pub mod serve_file;
pub mod token_cache;

pub use caller::{Caller, ClientAddr};
