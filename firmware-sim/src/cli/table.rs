//! `firmware-sim table show [--volume VOL]`.

use clap::{Args, Subcommand};

use super::ClientOpts;
use crate::error::CliError;
use crate::output::{emit, iso_utc_ms, Table};

/// `table` and its options.
#[derive(Debug, Args)]
pub struct TableCmd {
    #[command(flatten)]
    client: ClientOpts,
    #[command(subcommand)]
    verb: TableVerb,
}

#[derive(Debug, Subcommand)]
enum TableVerb {
    /// Activity-table entries, decoded (default: the subsystem table).
    Show {
        /// Show this volume's table instead.
        #[arg(long)]
        volume: Option<String>,
    },
}

/// Runs a `table` verb.
pub fn run(cmd: TableCmd) -> Result<(), CliError> {
    let c = cmd.client.client()?;
    match cmd.verb {
        TableVerb::Show { volume } => {
            let entries = c.table(volume.as_deref())?;
            emit(cmd.client.json, &entries, |es| {
                let mut t = Table::new(&[
                    "TABLE",
                    "SEQ",
                    "SESSION",
                    "PHYS",
                    "VOLUME",
                    "EXTENTS",
                    "STATUS",
                    "PROGRAM",
                    "HOST",
                    "TIME (UTC)",
                ]);
                for e in es {
                    let status = match &e.reason {
                        Some(r) => format!("{} ({r})", e.status),
                        None => e.status.clone(),
                    };
                    t.row(vec![
                        e.table.clone(),
                        e.seq.to_string(),
                        e.session_id.clone(),
                        format!("{:02X}", e.phys_session_id),
                        e.volume.clone(),
                        e.extents.clone(),
                        status,
                        e.program.clone().unwrap_or_else(|| "-".into()),
                        e.host.clone().unwrap_or_else(|| "-".into()),
                        iso_utc_ms(e.time_unix_ms),
                    ]);
                }
                t.print();
            })
        }
    }
}
