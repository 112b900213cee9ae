//! `firmware-sim volume list|create|delete`.

use clap::{Args, Subcommand};

use firmware_sim_client::model::{CreateVolume, VolumeInfo};

use super::ClientOpts;
use crate::error::CliError;
use crate::output::{emit, human_bytes, Table};

/// `volume` and its options.
#[derive(Debug, Args)]
pub struct VolumeCmd {
    #[command(flatten)]
    client: ClientOpts,
    #[command(subcommand)]
    verb: VolumeVerb,
}

#[derive(Debug, Subcommand)]
enum VolumeVerb {
    /// List volumes (id, model, size, tracks, NBD URI).
    List,
    /// Create a volume.
    Create {
        /// Volume id (also its NBD export name).
        #[arg(long)]
        id: String,
        /// Device model: 3390-1|3|9|27|54, 3390-A:<cylinders>, fb:<size>[:<track-size>].
        #[arg(long)]
        model: String,
    },
    /// Delete a volume (refused while in a mapping or session).
    Delete {
        /// Volume id.
        id: String,
    },
}

/// Runs a `volume` verb.
pub fn run(cmd: VolumeCmd) -> Result<(), CliError> {
    let c = cmd.client.client()?;
    let json = cmd.client.json;
    match cmd.verb {
        VolumeVerb::List => {
            let vols = c.volumes()?;
            emit(json, &vols, |vols| print_volumes(vols))
        }
        VolumeVerb::Create { id, model } => {
            let v = c.create_volume(&CreateVolume { id, model })?;
            if let Some(w) = &v.warning {
                eprintln!("firmware-sim: warning: {w}");
            }
            emit(json, &v, |v| {
                println!(
                    "created volume {} ({}, {})",
                    v.id,
                    v.model,
                    human_bytes(v.size_bytes)
                );
                if let Some(uri) = &v.nbd_uri {
                    println!("{uri}");
                }
            })
        }
        VolumeVerb::Delete { id } => {
            let done = c.delete_volume(&id)?;
            emit(json, &done, |d| println!("{}", d.message))
        }
    }
}

fn print_volumes(vols: &[VolumeInfo]) {
    let mut t = Table::new(&[
        "ID", "MODEL", "SIZE", "USED", "TRACKS", "STATE", "MAPPINGS", "NBD URI",
    ]);
    for v in vols {
        let maps = v
            .mappings
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        t.row(vec![
            v.id.clone(),
            v.model.clone(),
            human_bytes(v.size_bytes),
            human_bytes(v.allocated_bytes),
            v.tracks.to_string(),
            if v.online { "online" } else { "offline" }.into(),
            if maps.is_empty() { "-".into() } else { maps },
            v.nbd_uri.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.print();
    for v in vols.iter().filter(|v| !v.online) {
        if let Some(r) = &v.offline_reason {
            println!("{} is offline: {r}", v.id);
        }
    }
}
