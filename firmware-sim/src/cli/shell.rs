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
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "firmware-sim", &mut out);
    if a.shell == Shell::Bash {
        out = fix_bash_names(&out);
    }
    write_stdout(&out, "cannot write the completion script")
}

/// Writes `out` to stdout; a closed pipe (`... | head`) ends the process
/// quietly with the status of one killed by SIGPIPE, as every other verb
/// does (QA: `man | head` said "Broken pipe" and exited 1).
fn write_stdout(out: &[u8], what: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    match stdout.write_all(out).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(crate::EXIT_BROKEN_PIPE)
        }
        r => r.map_err(|e| CliError::failed(what, e)),
    }
}

/// clap_complete 4.6's bash script names the branches of every verb below
/// the top level `firmware__subcmd__sim__subcmd__...` (the `-` of the binary
/// name escaped twice) while it looks them up as `firmware__sim__subcmd__...`,
/// so nothing below the first word completed. One spelling for both.
fn fix_bash_names(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("firmware__subcmd__sim__subcmd__", "firmware__sim__subcmd__")
        .into_bytes()
}

/// `man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one file per page (`firmware-sim.1`, `firmware-sim-map-create.1`,
    /// ...) into this directory instead of every page on stdout, so that
    /// `man firmware-sim-map-create` finds its page.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// Prints the man pages (roff) on stdout, e.g.
/// `firmware-sim man > /usr/local/share/man/man1/firmware-sim.1`, or with
/// `--dir DIR` writes one file per page there.
pub fn man(a: ManArgs) -> Result<(), CliError> {
    let mut main = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut main)
        .map_err(|e| CliError::failed("cannot render the man page", e))?;
    // Each verb, and each verb of a verb (`map create`), gets a page of its
    // own after the main page, named as the SEE ALSO lines name it.
    let mut root = Cli::command();
    // Built, so each verb carries the global flags (`--api`, `--json`...)
    // its page must show and its argument checks refer to.
    root.build();
    let version = root.get_version().unwrap_or_default().to_string();
    let mut pages = vec![("firmware-sim".to_string(), main)];
    collect_verbs(&root, "firmware-sim", &version, &mut pages)?;
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failed(format!("cannot create {}", dir.display()), e))?;
        for (name, page) in &pages {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, page)
                .map_err(|e| CliError::failed(format!("cannot write {}", path.display()), e))?;
        }
        println!("{} man pages written to {}", pages.len(), dir.display());
        return Ok(());
    }
    let out: Vec<u8> = pages.into_iter().flat_map(|(_, page)| page).collect();
    write_stdout(&out, "cannot write the man page")
}

/// A page (name, roff) for every visible verb under `cmd`, recursively,
/// each named `parent-verb` (the name clap_mangen's SUBCOMMANDS lists give).
fn collect_verbs(
    cmd: &clap::Command,
    parent: &str,
    version: &str,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), CliError> {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{parent}-{}", sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().name(&name).version(version.to_string()))
            .render(&mut page)
            .map_err(|e| CliError::failed("cannot render the man page", e))?;
        pages.push((name.clone(), page));
        collect_verbs(sub, &name, version, pages)?;
    }
    Ok(())
}
