//! End-to-end tests of the `intact` binary: real processes, real TCP, SIGKILL.

mod cli;
mod crash;
mod deploy;
mod faults;
mod gc;
mod git_host;
mod go_direct;
mod go_fixtures;
mod go_proxy;
mod harness;
mod hooks;
mod large;
mod observability;
mod openapi;
mod power_loss;
mod replicas;
mod resumable;
mod scale_out;
mod shutdown;
mod staging;
mod sumdb;
mod tls;
mod tokens;
mod torture;
mod transfer;
