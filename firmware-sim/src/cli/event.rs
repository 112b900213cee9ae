//! `firmware-sim event ipl|rm-restart|abend|reset`: each prints the decisions
//! taken, per session.

use clap::{Args, Subcommand};

use super::ClientOpts;
use crate::api::model::{EventReport, EventRequest};
use crate::error::CliError;
use crate::output::emit;

/// `event` and its options.
#[derive(Debug, Args)]
pub struct EventCmd {
    #[command(flatten)]
    client: ClientOpts,
    #[command(subcommand)]
    verb: EventVerb,
}

#[derive(Debug, Subcommand)]
enum EventVerb {
    /// Restart the subsystem and replay its activity tables.
    Ipl,
    /// Restart the resource manager only.
    RmRestart,
    /// Abnormal end of a backup program.
    Abend {
        /// The program.
        #[arg(long)]
        program: String,
    },
    /// Controller warmstart.
    Reset {
        /// Lose volatile state (sessions must then be checked against the tables).
        #[arg(long)]
        lose_volatile: bool,
    },
}

/// Runs an `event` verb.
pub fn run(cmd: EventCmd) -> Result<(), CliError> {
    let c = cmd.client.client();
    let (name, body) = match cmd.verb {
        EventVerb::Ipl => ("ipl", EventRequest::default()),
        EventVerb::RmRestart => ("rm-restart", EventRequest::default()),
        EventVerb::Abend { program } => (
            "abend",
            EventRequest {
                program: Some(program),
                lose_volatile: false,
            },
        ),
        EventVerb::Reset { lose_volatile } => (
            "reset",
            EventRequest {
                program: None,
                lose_volatile,
            },
        ),
    };
    let report: EventReport = c.post(&format!("/events/{name}"), &body)?;
    emit(cmd.client.json, &report, print_report)
}

/// Prints an event report: one line per session the event acted on (ended,
/// resumed), orphans withdrawn, and one count of the sessions it left as
/// they were, so the output does not grow with the history of sessions
/// (`--json` keeps every decision).
pub fn print_report(r: &EventReport) {
    println!("event: {}", r.event);
    for n in &r.notes {
        println!("  {n}");
    }
    let (mut resumed, mut terminated, mut untouched) = (0usize, 0usize, 0usize);
    for d in &r.decisions {
        if !d.acted {
            match d.outcome.as_str() {
                "resumed" => resumed += 1,
                "terminated" => terminated += 1,
                _ => untouched += 1,
            }
            continue;
        }
        let outcome = match &d.reason {
            Some(reason) => format!("{} ({reason})", d.outcome),
            None => d.outcome.clone(),
        };
        let program = d.program.as_deref().unwrap_or("-");
        println!(
            "  session {} (program {program}): {outcome}: {}",
            d.session, d.why
        );
    }
    for o in &r.orphans {
        println!(
            "  orphan physical session {:02X} of {} on {} withdrawn",
            o.phys, o.owner, o.subsystem
        );
    }
    if resumed + terminated + untouched > 0 {
        println!(
            "  unchanged: {resumed} already resumed, {terminated} already terminated, {untouched} untouched"
        );
    }
    for p in &r.problems {
        println!("  INCOMPLETE: {p} (the next event finishes it)");
    }
    if r.decisions.is_empty() && r.orphans.is_empty() {
        println!("  no sessions");
    }
}
