//! `firmware-sim map create|start|prepare|stop|delete|list|show|wait|restore`.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use firmware_sim_client::model::{CreateMap, MapInfo};
use firmware_sim_client::Client;

use super::ClientOpts;
use crate::error::CliError;
use crate::output::{emit, Table};

/// `map` and its options.
#[derive(Debug, Args)]
pub struct MapCmd {
    #[command(flatten)]
    client: ClientOpts,
    #[command(subcommand)]
    verb: MapVerb,
}

/// Copy type of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CopyTypeArg {
    /// Background copy of every grain.
    Full,
    /// Copy-on-write only.
    Nocopy,
}

impl CopyTypeArg {
    fn name(self) -> &'static str {
        match self {
            CopyTypeArg::Full => "full",
            CopyTypeArg::Nocopy => "nocopy",
        }
    }
}

#[derive(Debug, Subcommand)]
enum MapVerb {
    /// Create a mapping (state idle_or_copied until started).
    Create {
        /// Source volume.
        #[arg(long)]
        source: String,
        /// Target volume.
        #[arg(long)]
        target: String,
        /// Copy type.
        #[arg(long = "type", value_enum)]
        copy_type: CopyTypeArg,
        /// Keep bitmaps so a later start copies only what changed.
        #[arg(long)]
        incremental: bool,
        /// Extents of the source: CCHH-CCHH,... (CKD) or FIRST-LAST,... tracks (FB).
        #[arg(long, value_name = "CCHH-CCHH,...")]
        extent: Option<String>,
        /// Background copy rate, SVC 0-150 scale (0 = no background copy).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=150))]
        copy_rate: Option<u8>,
        /// Cleaning rate, SVC 0-150 scale.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=150))]
        clean_rate: Option<u8>,
        /// Map id (default: the next one; ids are never reused).
        #[arg(long)]
        id: Option<u32>,
        /// A name for the map; every verb then takes it in place of the id.
        #[arg(long)]
        name: Option<String>,
    },
    /// Start a mapping: its point in time is now.
    Start {
        /// Map id or name.
        id: String,
        /// Start as a restore: the target may be the source of active maps
        /// (e.g. copy a snapshot back onto its source); their images stay.
        #[arg(long)]
        restore: bool,
    },
    /// Prepare a mapping (flush the source) so a later start is instant.
    Prepare {
        /// Map id or name.
        id: String,
    },
    /// Resume a suspended mapping once an IPL (`event ipl`) has reopened
    /// its stores: copying again, or stopping if a stop was asked meanwhile.
    Resume {
        /// Map id or name.
        id: String,
    },
    /// Stop a mapping; cleans dependants first (state stopping).
    Stop {
        /// Map id or name.
        id: String,
        /// Stop at once; dependants stop too.
        #[arg(long)]
        force: bool,
    },
    /// Delete a mapping.
    Delete {
        /// Map id or name.
        id: String,
        /// Delete even while copying (the target image is lost).
        #[arg(long)]
        force: bool,
    },
    /// List mappings.
    List,
    /// Show one mapping: state, progress %, rates, cascade, extents, group.
    Show {
        /// Map id or name.
        id: String,
    },
    /// Wait until a mapping is copied or stopped.
    Wait {
        /// Map id or name.
        id: String,
        /// Show a progress bar on stderr.
        #[arg(long)]
        progress: bool,
        /// Give up after this many seconds (default: wait forever).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Copy the target back onto the source (reverse mapping, started now).
    Restore {
        /// Map id or name.
        id: String,
        /// Background copy rate of the reverse map, 0-150 (default: the map's own, else 50).
        #[arg(long, value_name = "0-150")]
        copy_rate: Option<u8>,
    },
}

/// Runs a `map` verb.
pub fn run(cmd: MapCmd) -> Result<(), CliError> {
    let c = cmd.client.client()?;
    let json = cmd.client.json;
    match cmd.verb {
        MapVerb::Create {
            source,
            target,
            copy_type,
            incremental,
            extent,
            copy_rate,
            clean_rate,
            id,
            name,
        } => {
            let req = CreateMap {
                source,
                target,
                copy_type: copy_type.name().into(),
                incremental,
                extent,
                copy_rate,
                clean_rate,
                id,
                name,
            };
            let m = c.create_map(&req)?;
            emit(json, &m, |m| {
                println!(
                    "created map {}{} {} -> {} ({}{}), state {}",
                    m.id,
                    m.name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    m.source,
                    m.target,
                    m.copy_type,
                    if m.incremental { ", incremental" } else { "" },
                    m.state
                )
            })
        }
        MapVerb::Start { id, restore } => action(json, "start", c.start_map(&id, restore)?),
        MapVerb::Prepare { id } => action(json, "prepare", c.prepare_map(&id)?),
        MapVerb::Resume { id } => action(json, "resume", c.resume_map(&id)?),
        MapVerb::Stop { id, force } => {
            let m = c.stop_map(&id, force)?;
            if m.state == "suspended" && !json {
                eprintln!(
                    "firmware-sim: map {} is suspended: the stop takes effect when it resumes \
                     (`map resume {}`, after an IPL); `map stop {} --force` stops it now and \
                     drops its target's image",
                    m.id, m.id, m.id
                );
            }
            action(json, "stop", m)
        }
        MapVerb::Restore { id, copy_rate } => {
            let m = c.restore_map(&id, copy_rate)?;
            emit(json, &m, |m| {
                println!(
                    "restoring with map {}: {} -> {}, state {}",
                    m.id, m.source, m.target, m.state
                )
            })
        }
        MapVerb::Delete { id, force } => {
            let done = c.delete_map(&id, force)?;
            emit(json, &done, |d| println!("{}", d.message))
        }
        MapVerb::List => {
            let maps = c.maps()?;
            emit(json, &maps, |maps| print_maps(maps))
        }
        MapVerb::Show { id } => {
            let m = c.map(&id)?;
            emit(json, &m, print_map)
        }
        MapVerb::Wait {
            id,
            progress,
            timeout,
        } => {
            let m = wait(&c, &id, progress, timeout.map(Duration::from_secs))?;
            emit(json, &m, |m| {
                println!("map {} {} ({}%)", m.id, m.state, m.progress_percent)
            })
        }
    }
}

fn action(json: bool, verb: &str, m: MapInfo) -> Result<(), CliError> {
    emit(json, &m, |m| {
        println!(
            "map {} {}: state {} ({}%)",
            m.id, verb, m.state, m.progress_percent
        );
        for line in &m.also_stopped {
            println!("  {line}");
        }
    })
}

/// `map wait`: the client's wait, with a progress bar on stderr that is
/// cleared before any result, so lines do not run together.
fn wait(
    c: &Client,
    id: &str,
    progress: bool,
    timeout: Option<Duration>,
) -> Result<MapInfo, CliError> {
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(100);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} map {prefix} {msg:>14} [{bar:40}] {pos:>3}% ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(id.to_string());
        bar
    });
    let out = c.wait_map(id, timeout, |m| {
        if let Some(bar) = &bar {
            bar.set_message(m.state.clone());
            bar.set_position(u64::from(m.progress_percent));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(out?)
}

fn print_maps(maps: &[MapInfo]) {
    let mut t = Table::new(&[
        "ID", "NAME", "SOURCE", "TARGET", "TYPE", "INCR", "STATE", "PROGRESS", "COPY", "CLEAN",
        "GROUP",
    ]);
    for m in maps {
        t.row(vec![
            m.id.to_string(),
            m.name.clone().unwrap_or_else(|| "-".into()),
            m.source.clone(),
            m.target.clone(),
            m.copy_type.clone(),
            if m.incremental { "yes" } else { "no" }.into(),
            m.state.clone(),
            format!("{}%", m.progress_percent),
            m.copy_rate.to_string(),
            m.clean_rate.to_string(),
            m.group.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
        ]);
    }
    t.print();
}

fn print_map(m: &MapInfo) {
    println!("id:          {}", m.id);
    if let Some(n) = &m.name {
        println!("name:        {n}");
    }
    println!("source:      {}", m.source);
    println!("target:      {}", m.target);
    println!("type:        {}", m.copy_type);
    println!("incremental: {}", m.incremental);
    println!("extents:     {}", m.extents);
    if m.withdrawn {
        println!(
            "state:       {} (its session ended: it hands the tracks an older session reads \
             through it to that session's target, then deletes itself)",
            m.state
        );
    } else {
        println!("state:       {}", m.state);
    }
    println!("progress:    {}%", m.progress_percent);
    if let Some(why) = &m.copy_stalled {
        println!("stalled:     {why} (retrying)");
    }
    println!("copy rate:   {}", m.copy_rate);
    println!("clean rate:  {}", m.clean_rate);
    if let Some(g) = m.group {
        println!("group:       {g}");
    }
    match &m.cascade {
        Some(c) if c.head_map == Some(m.id) => println!(
            "cascade:     {} {} (cut at 100 %: copying until the volumes after {} hold every track they read through it)",
            c.copy_type,
            c.order.join(" -> "),
            m.target
        ),
        Some(c) => println!("cascade:     {} {}", c.copy_type, c.order.join(" -> ")),
        None => println!("cascade:     -"),
    }
    if m.restoring {
        println!(
            "restoring:   yes (a restore: the image on its source is copied back onto its target)"
        );
    }
}
