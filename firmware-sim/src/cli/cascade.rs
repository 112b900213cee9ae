//! `firmware-sim cascade list`.

use clap::{Args, Subcommand};

use firmware_sim_client::model::{CascadeInfo, MapInfo};

use super::ClientOpts;
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
    List {
        /// Print the cascades and every other map (restores, maps not yet
        /// in a cascade) as a Graphviz digraph: `... --dot | dot -Tsvg > c.svg`.
        #[arg(long, conflicts_with = "json")]
        dot: bool,
    },
}

/// Runs a `cascade` verb.
pub fn run(cmd: CascadeCmd) -> Result<(), CliError> {
    let c = cmd.client.client()?;
    match cmd.verb {
        CascadeVerb::List { dot: true } => {
            let cascades = c.cascades()?;
            let maps = c.maps()?;
            print!("{}", to_dot(&cascades, &maps));
            Ok(())
        }
        CascadeVerb::List { dot: false } => {
            let cascades = c.cascades()?;
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
                    if let (Some(m), Some(head)) = (c.head_map, c.order.first()) {
                        println!(
                            "        {head} is map {m}'s finished copy, cut from its chain: \
                             map {m} stays copying until the volumes after {head} hold \
                             every track they read through it"
                        );
                    }
                }
            })
        }
    }
}

/// Quotes a name for Graphviz.
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The cascades as solid edges (who reads through whom, head first) and
/// every map outside them (a restore, a map not started) as a dashed edge
/// from its source to its target.
fn to_dot(cascades: &[CascadeInfo], maps: &[MapInfo]) -> String {
    let mut out = String::from("digraph cascades {\n  rankdir=LR;\n  node [shape=box];\n");
    let mut in_cascade = std::collections::BTreeSet::new();
    for c in cascades {
        if let Some(head) = c.order.first() {
            out.push_str(&format!("  {} [style=bold];\n", q(head)));
        }
        for (i, pair) in c.order.windows(2).enumerate() {
            let map = c.maps.get(i).copied();
            if let Some(m) = map {
                in_cascade.insert(m);
            }
            let label = match map {
                Some(m) => format!("map {m} ({})", c.copy_type),
                None => c.copy_type.clone(),
            };
            out.push_str(&format!(
                "  {} -> {} [label={}];\n",
                q(&pair[0]),
                q(&pair[1]),
                q(&label)
            ));
        }
    }
    for m in maps.iter().filter(|m| !in_cascade.contains(&m.id)) {
        let what = if m.restoring { "restore, " } else { "" };
        out.push_str(&format!(
            "  {} -> {} [style=dashed, label={}];\n",
            q(&m.source),
            q(&m.target),
            q(&format!(
                "map {} ({what}{}, {})",
                m.id, m.copy_type, m.state
            ))
        ));
    }
    out.push_str("}\n");
    out
}
