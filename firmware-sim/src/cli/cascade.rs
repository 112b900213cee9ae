//! `firmware-sim cascade list`.

use clap::{Args, Subcommand};

use super::ClientOpts;
use crate::api::model::CascadeInfo;
use crate::error::CliError;
use crate::output::emit;

/// `cascade` and its options.
#[derive(Debug, Args)]
pub struct CascadeCmd {
    #[command(flatten)]
    client: ClientOpts,
    #[command(subcommand)]
    verb: CascadeVerb,
}

#[derive(Debug, Subcommand)]
enum CascadeVerb {
    /// Each cascade: type and volume order, head first (`FB00 -> FB02 -> FB01`).
    List,
}

/// Runs a `cascade` verb.
pub fn run(cmd: CascadeCmd) -> Result<(), CliError> {
    let c = cmd.client.client();
    match cmd.verb {
        CascadeVerb::List => {
            let cascades: Vec<CascadeInfo> = c.get("/cascades")?;
            emit(cmd.client.json, &cascades, |cs| {
                if cs.is_empty() {
                    println!("no cascades (start a mapping to create one)");
                }
                for c in cs {
                    let maps = c
                        .maps
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",");
                    println!(
                        "{:<7} {}   (maps {maps})",
                        c.copy_type,
                        c.order.join(" -> ")
                    );
                }
            })
        }
    }
}
