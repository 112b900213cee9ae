//! `firmware-sim session start|release|wait|complete|terminate|list`.

use std::time::Duration;

use clap::{Args, Subcommand};
use firmware_sim_client::model::{SessionInfo, StartSession};
use firmware_sim_client::Client;

use super::ClientOpts;
use crate::error::CliError;
use crate::output::{emit, Table};

/// `session` and its options.
#[derive(Debug, Args)]
pub struct SessionCmd {
    #[command(flatten)]
    client: ClientOpts,
    #[command(subcommand)]
    verb: SessionVerb,
}

#[derive(Debug, Subcommand)]
enum SessionVerb {
    /// Start a backup copy session protecting source extents.
    Start {
        /// Logical session id.
        #[arg(long)]
        id: String,
        /// VOL:CCHH-CCHH[,...] (FB volumes: VOL:FIRST_TRACK-LAST_TRACK); a peer's
        /// volume is SS02/VOL. Repeatable, one source volume each.
        #[arg(long, value_name = "VOL:CCHH-CCHH[,...]", required = true)]
        extent: Vec<String>,
        /// Target volume receiving the time-zero image (SS02/VOL on a peer);
        /// repeatable, one per source volume in order.
        #[arg(long, required = true)]
        target: Vec<String>,
        /// Backup program that owns the session.
        #[arg(long)]
        program: Option<String>,
        /// The host starting it, its owner: that host's IPL, resource-manager
        /// restart and abends end it (default: the daemon's host id).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Background copy rate of the session's maps, SVC 0-150 scale
        /// (default 100, 64 MiB/s; 0: copy only what writes touch).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=150))]
        copy_rate: Option<u8>,
    },
    /// Mark a session logically complete: its program released serialization,
    /// applications run again and the copy goes on. A restart event still
    /// ends the session until `session complete`.
    Release {
        /// Logical session id.
        session: String,
    },
    /// Wait until a session's copy has finished on every subsystem (then
    /// `session complete` succeeds); with --complete, complete it too.
    Wait {
        /// Logical session id.
        session: String,
        /// Show a progress bar on stderr.
        #[arg(long)]
        progress: bool,
        /// Complete the session once its copy has finished.
        #[arg(long)]
        complete: bool,
        /// Give up after this many seconds (default: wait forever).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Complete a session (its copy has finished).
    Complete {
        /// Logical session id.
        session: String,
    },
    /// Terminate a session now: rows `terminated(operator)`, protection
    /// dropped, its targets keep whatever they hold.
    Terminate {
        /// Logical session id.
        session: String,
        /// Why (logged with the termination).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List sessions: id, physical ids, volumes, extents, state.
    List {
        /// From this subsystem's own activity tables alone, asking no peer:
        /// for use while a peer does not answer (a session spanning it then
        /// shows only its parts here, in the state these rows decide).
        #[arg(long)]
        local: bool,
    },
}

/// Runs a `session` verb.
pub fn run(cmd: SessionCmd) -> Result<(), CliError> {
    let c = cmd.client.client()?;
    let json = cmd.client.json;
    match cmd.verb {
        SessionVerb::Start {
            id,
            extent,
            target,
            program,
            host,
            copy_rate,
        } => {
            let req = StartSession {
                id,
                extent: extent.join(","),
                target: target.join(","),
                program,
                host,
                copy_rate,
            };
            let s = c.start_session(&req)?;
            emit(json, &s, |s| {
                println!("session {} {}", s.id, s.state);
                print_sessions(std::slice::from_ref(s));
            })
        }
        SessionVerb::Release { session } => {
            let s = c.release_session(&session)?;
            emit(json, &s, |s| {
                println!("session {} {} (logically complete)", s.id, s.state)
            })
        }
        SessionVerb::Wait {
            session,
            progress,
            complete,
            timeout,
        } => {
            let mut s = wait(&c, &session, progress, timeout.map(Duration::from_secs))?;
            if complete {
                s = c.complete_session(&session)?;
            }
            emit(json, &s, |s| match s.state.as_str() {
                "completed" => println!("session {} completed", s.id),
                _ => println!(
                    "session {} copied (100%): complete it with `firmware-sim session complete {}`",
                    s.id, s.id
                ),
            })
        }
        SessionVerb::Complete { session } => {
            let s = c.complete_session(&session)?;
            emit(json, &s, |s| println!("session {} {}", s.id, s.state))
        }
        SessionVerb::Terminate { session, reason } => {
            let s = c.terminate_session(&session, reason)?;
            emit(json, &s, |s| match &s.reason {
                Some(r) => println!("session {} {} ({r})", s.id, s.state),
                None => println!("session {} {}", s.id, s.state),
            })
        }
        SessionVerb::List { local: true } => {
            let ss = c.sessions_local()?;
            if !json {
                eprintln!(
                    "firmware-sim: this subsystem's own rows only (--local): sessions spanning \
                     peers show only their parts here"
                );
            }
            emit(json, &ss, |ss| print_sessions(ss))
        }
        SessionVerb::List { local: false } => {
            let ss = c.sessions().map_err(|e| {
                let peer_down =
                    matches!(e.kind(), Some(firmware_sim_client::ErrorKind::Unavailable));
                let mut e = CliError::from(e);
                if let (true, CliError::Api { message, .. }) = (peer_down, &mut e) {
                    message.push_str(
                        " (`session list --local` lists what this subsystem's own tables say)",
                    );
                }
                e
            })?;
            emit(json, &ss, |ss| print_sessions(ss))
        }
    }
}

/// `session wait`: the client's wait, with a progress bar on stderr that is
/// cleared before any result.
fn wait(
    c: &Client,
    id: &str,
    progress: bool,
    timeout: Option<Duration>,
) -> Result<SessionInfo, CliError> {
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(1000);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} session {prefix} {msg:>10} [{bar:40}] {percent:>3}% ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(id.to_string());
        bar
    });
    let out = c.wait_session(id, timeout, |s| {
        if let Some(bar) = &bar {
            bar.set_message(s.state.clone());
            bar.set_position((s.progress_percent.unwrap_or(0.0) * 10.0) as u64);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(out?)
}

fn print_sessions(ss: &[SessionInfo]) {
    let mut t = Table::new(&[
        "ID",
        "STATE",
        "PROGRAM",
        "HOST",
        "SUBSYSTEM",
        "PHYS",
        "VOLUME",
        "EXTENTS",
        "PROGRESS",
    ]);
    for s in ss {
        let broken: Vec<String> = s
            .parts
            .iter()
            .filter_map(|p| {
                p.broken
                    .as_ref()
                    .map(|b| format!("{}/{:02X} {b}", p.subsystem, p.phys))
            })
            .collect();
        let suspended: Vec<String> = s
            .parts
            .iter()
            .filter(|p| p.suspended)
            .map(|p| format!("{}/{:02X}", p.subsystem, p.phys))
            .collect();
        let state = match &s.reason {
            Some(r) => format!("{} ({r})", s.state),
            // The image is no longer whole: said until an event ends it.
            None if !broken.is_empty() => format!(
                "{} (image lost: {}; `session terminate {}`)",
                s.state,
                broken.join(", "),
                s.id
            ),
            None if !suspended.is_empty() => format!(
                "{} (suspended by a reset on {}: awaiting its judgment)",
                s.state,
                suspended.join(", ")
            ),
            None if s.logically_complete => format!("{} (logically complete)", s.state),
            None => s.state.clone(),
        };
        let progress = s
            .progress_percent
            .map(|p| format!("{p:.1}%"))
            .unwrap_or_else(|| "-".into());
        let mut first = true;
        for p in &s.parts {
            for v in &p.volumes {
                let lead = |x: String| if first { x } else { String::new() };
                t.row(vec![
                    lead(s.id.clone()),
                    lead(state.clone()),
                    lead(s.program.clone().unwrap_or_else(|| "-".into())),
                    lead(s.host.clone()),
                    p.subsystem.clone(),
                    format!("{:02X}", p.phys),
                    v.volume.clone(),
                    v.extents.clone(),
                    lead(progress.clone()),
                ]);
                first = false;
            }
        }
        if first {
            t.row(vec![
                s.id.clone(),
                state,
                s.program.clone().unwrap_or_else(|| "-".into()),
                s.host.clone(),
            ]);
        }
    }
    t.print();
}
