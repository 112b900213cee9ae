//! `firmware-sim completions SHELL` and `firmware-sim man`: generated from
//! the same clap tree as the parser, so they never drift from the real verbs.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;
use crate::error::CliError;

/// `completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Prints the completion script for `shell` on stdout, e.g.
/// `firmware-sim completions bash > /etc/bash_completion.d/firmware-sim`.
pub fn completions(a: CompletionsArgs) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "firmware-sim", &mut std::io::stdout());
    Ok(())
}

/// Prints the man page (roff) on stdout, e.g.
/// `firmware-sim man > /usr/local/share/man/man1/firmware-sim.1`.
pub fn man() -> Result<(), CliError> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| CliError::failed("cannot render the man page", e))?;
    // Each verb gets a section of its own after the main page.
    for sub in Cli::command().get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        let name = format!("firmware-sim-{}", sub.get_name());
        clap_mangen::Man::new(sub.clone().name(name))
            .render(&mut out)
            .map_err(|e| CliError::failed("cannot render the man page", e))?;
    }
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| CliError::failed("cannot write the man page", e))
}
