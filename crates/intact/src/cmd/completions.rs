//! `intact completions SHELL`: a completion script for the shell, from the same definitions
//! that parse the arguments (so it cannot drift from them).

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

pub fn run<C: CommandFactory>(args: Args) -> anyhow::Result<ExitCode> {
    let mut command = C::command();
    clap_complete::generate(args.shell, &mut command, "intact", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
