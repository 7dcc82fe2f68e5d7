//! Test-only helpers shared by intact's test suites (store and server). Today: a real
//! S3-compatible server, Garage, started on loopback for the tests of the S3 blob store.

pub mod garage;

pub use garage::{Garage, shared_garage};
