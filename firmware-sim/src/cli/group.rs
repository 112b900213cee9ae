//! `firmware-sim group create|start|stop|delete|add|remove|list`.

use clap::{Args, Subcommand};

use firmware_sim_client::check_id;
use firmware_sim_client::model::CreateGroup;

use super::ClientOpts;
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
    /// Create a consistency group of maps; prints the id it was given.
    Create {
        /// Group id (default: the next free one, as SVC assigns them).
        id: Option<u32>,
        /// Member maps (ids or names), comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        maps: Vec<String>,
        /// A name for the group; every verb then takes it in place of the id.
        #[arg(long)]
        name: Option<String>,
    },
    /// Start every map of the group at one instant.
    Start {
        /// Group id or name.
        id: String,
        /// Start as a restore (targets may be sources of active maps).
        #[arg(long)]
        restore: bool,
    },
    /// Stop every map of the group (cleaning first; --force: at once).
    Stop {
        /// Group id or name.
        id: String,
        /// Stop at once; dependants stop too.
        #[arg(long)]
        force: bool,
    },
    /// Delete a group (--force: its maps leave it first).
    Delete {
        /// Group id or name.
        id: String,
        /// Delete even if it still has maps (the maps stay).
        #[arg(long)]
        force: bool,
    },
    /// Add an idle_or_copied or stopped map to a group.
    Add {
        /// Group id or name.
        id: String,
        /// Map id or name.
        #[arg(long)]
        map: String,
    },
    /// Take an idle_or_copied or stopped map out of its group.
    Remove {
        /// Group id or name.
        id: String,
        /// Map id or name.
        #[arg(long)]
        map: String,
    },
    /// List groups.
    List,
}

/// Runs a `group` verb.
pub fn run(cmd: GroupCmd) -> Result<(), CliError> {
    let c = cmd.client.client()?;
    let json = cmd.client.json;
    match cmd.verb {
        GroupVerb::Create { id, maps, name } => {
            let maps = maps
                .iter()
                .map(|m| c.map_id(m))
                .collect::<Result<Vec<u32>, _>>()?;
            let g = c.create_group(&CreateGroup { id, maps, name })?;
            emit(json, &g, |g| {
                let name = g
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                println!("created group {}{name} with maps {}", g.id, join(&g.maps))
            })
        }
        GroupVerb::Start { id, restore } => {
            let maps = c.start_group(&id, restore)?;
            emit(json, &maps, |maps| {
                let ids: Vec<u32> = maps.iter().map(|m| m.id).collect();
                println!("group {id} started: maps {} at one instant", join(&ids));
            })
        }
        GroupVerb::Stop { id, force } => {
            let maps = c.stop_group(&id, force)?;
            emit(json, &maps, |maps| {
                for m in maps {
                    println!("map {} {} ({}%)", m.id, m.state, m.progress_percent);
                }
            })
        }
        GroupVerb::Delete { id, force } => {
            let done = c.delete_group(&id, force)?;
            emit(json, &done, |d| println!("{}", d.message))
        }
        GroupVerb::Add { id, map } => {
            check_id(&id)?;
            let map = c.map_id(&map)?;
            let maps = c.add_group_map(&id, map)?;
            emit(json, &maps, |maps| {
                let ids: Vec<u32> = maps.iter().map(|m| m.id).collect();
                println!("group {id}: maps {}", join(&ids));
            })
        }
        GroupVerb::Remove { id, map } => {
            check_id(&id)?;
            let map = c.map_id(&map)?;
            let maps = c.remove_group_map(&id, map)?;
            emit(json, &maps, |maps| {
                let ids: Vec<u32> = maps.iter().map(|m| m.id).collect();
                println!("group {id}: maps {}", join(&ids));
            })
        }
        GroupVerb::List => {
            let groups = c.groups()?;
            emit(json, &groups, |gs| {
                let mut t = Table::new(&["ID", "NAME", "STATE", "MAPS", "SESSION"]);
                for g in gs {
                    let session = g.session.clone().unwrap_or_else(|| "-".into());
                    t.row(vec![
                        g.id.to_string(),
                        g.name.clone().unwrap_or_else(|| "-".into()),
                        g.state.clone(),
                        join(&g.maps),
                        session,
                    ]);
                }
                t.print();
            })
        }
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
