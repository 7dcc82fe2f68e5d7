//! The HTTP layer every front-end (the artifact API, the Go proxy, staging) stands on: who
//! is calling (address, token), and what each request is allowed to do.

pub mod caller;

pub use caller::{Caller, ClientAddr};
