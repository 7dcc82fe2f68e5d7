//! Integration tests for intact-go: building module zips from directories, and checking
//! this crate against the real go command and the x/mod sources that ship with it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod create;
mod go_crosscheck;
mod gotool;
mod invariants;
mod support;
