//! `firmware-sim event ipl|rm-restart|abend|reset`: each prints the decisions
//! taken, per session.

use clap::{Args, Subcommand};

use firmware_sim_client::model::EventReport;
use firmware_sim_client::Event;

use super::ClientOpts;
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
    /// IPL: restart the subsystem and its host, replay the activity tables and
    /// end every session with rows here. With --host, the IPL of that host
    /// alone: only its sessions end, the subsystem keeps running.
    Ipl {
        /// The host that IPLs alone (a host id, as `session list` shows it).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Restart a host's resource manager: that host's open sessions end.
    RmRestart {
        /// The host (default: the daemon's own).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Abnormal end of a backup program: its open sessions end.
    Abend {
        /// The program.
        #[arg(long)]
        program: String,
        /// The host it ran on (default: the daemon's own).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
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
    let c = cmd.client.client()?;
    let event = match cmd.verb {
        EventVerb::Ipl { host } => Event::Ipl { host },
        EventVerb::RmRestart { host } => Event::RmRestart { host },
        EventVerb::Abend { program, host } => Event::Abend { program, host },
        EventVerb::Reset { lose_volatile } => Event::Reset { lose_volatile },
    };
    let report = c.event(&event)?;
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
        // Hosts that raced to start one id hold one session each: name the host.
        let host = match &d.host {
            Some(h)
                if r.decisions
                    .iter()
                    .any(|o| o.session == d.session && o.host != d.host) =>
            {
                format!(", host {h}")
            }
            _ => String::new(),
        };
        println!(
            "  session {} (program {program}{host}): {outcome}: {}",
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
        println!("  {}", resource_manager::incomplete_line(p));
    }
    if r.decisions.is_empty() && r.orphans.is_empty() {
        println!("  no sessions");
    }
}
