//! `firmware-sim group create|start|list`.

use clap::{Args, Subcommand};

use super::ClientOpts;
use crate::api::model::{CreateGroup, ForceFlag, GroupInfo, MapInfo};
use crate::error::CliError;
use crate::output::{emit, Table};

/// `group` and its options.
#[derive(Debug, Args)]
pub struct GroupCmd {
    #[command(flatten)]
    client: ClientOpts,
    #[command(subcommand)]
    verb: GroupVerb,
}

#[derive(Debug, Subcommand)]
enum GroupVerb {
    /// Create a consistency group of maps.
    Create {
        /// Group id.
        id: u32,
        /// Member maps, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        maps: Vec<u32>,
    },
    /// Start every map of the group at one instant.
    Start {
        /// Group id.
        id: u32,
    },
    /// List groups.
    List,
}

/// Runs a `group` verb.
pub fn run(cmd: GroupCmd) -> Result<(), CliError> {
    let c = cmd.client.client();
    let json = cmd.client.json;
    match cmd.verb {
        GroupVerb::Create { id, maps } => {
            let g: GroupInfo = c.post("/groups", &CreateGroup { id, maps })?;
            emit(json, &g, |g| {
                println!("created group {} with maps {}", g.id, join(&g.maps))
            })
        }
        GroupVerb::Start { id } => {
            let maps: Vec<MapInfo> =
                c.post(&format!("/groups/{id}/start"), &ForceFlag::default())?;
            emit(json, &maps, |maps| {
                let ids: Vec<u32> = maps.iter().map(|m| m.id).collect();
                println!("group {id} started: maps {} at one instant", join(&ids));
            })
        }
        GroupVerb::List => {
            let groups: Vec<GroupInfo> = c.get("/groups")?;
            emit(json, &groups, |gs| {
                let mut t = Table::new(&["ID", "MAPS", "SESSION"]);
                for g in gs {
                    let session = g.session.clone().unwrap_or_else(|| "-".into());
                    t.row(vec![g.id.to_string(), join(&g.maps), session]);
                }
                t.print();
            })
        }
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
