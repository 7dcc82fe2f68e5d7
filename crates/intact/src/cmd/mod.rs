//! One module per subcommand.

pub mod admin;
pub mod completions;
pub mod config;
pub mod get;
pub mod go;
pub mod hooks;
pub mod ls;
pub mod migrate;
pub mod publish;
pub mod ready;
pub mod repos;
pub mod serve;
pub mod stage;
pub mod token;

/// Whether progress bars make sense (stderr is a terminal).
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
