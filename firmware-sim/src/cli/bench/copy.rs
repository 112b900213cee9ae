//! `bench copy`: a full background copy (the track copy users benchmark)
//! beside `cp --sparse=always` plus `fdatasync` of the same volume file.
//!
//! The source is written on `--written` percent of its tracks, spread evenly
//! (track `t` is written when `t * p / 100` steps up), so holes are where a
//! sparse-aware copy saves work. The copy runs `copy_step` until no
//! background work is left: every copied grain is flushed and journaled, as
//! in the daemon. `cp` then copies the source file and syncs it.

use std::time::Instant;

use clap::Args;
use geometry::DeviceModel;
use serde::Serialize;

use super::{bar, ctl, mib_s, open_subsystem, parse_percent, ratio, Common, Load, Scratch};
use crate::error::CliError;

/// `bench copy` options.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Device model of the volume (`3390-3`, `3390-54`, `fb:1G`, ...).
    #[arg(long, default_value = "fb:1G")]
    model: DeviceModel,
    /// Share of tracks written before the copy (`30%`).
    #[arg(long, default_value = "100%", value_parser = parse_percent)]
    written: u8,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Serialize)]
struct CopyReport {
    model: String,
    tracks: u64,
    tracks_written: u64,
    data_bytes: u64,
    copy_seconds: f64,
    copy_tracks_per_s: f64,
    copy_mib_per_s: f64,
    cp_seconds: f64,
    cp_mib_per_s: f64,
    copy_vs_cp: f64,
    dir: String,
    load: Load,
}

fn written(t: u64, p: u64) -> bool {
    (t + 1) * p / 100 != t * p / 100
}

pub(super) fn run(a: CopyArgs) -> Result<(), CliError> {
    let scratch = Scratch::new(&a.common.dir, "copy")?;
    let load = Load::start();
    let sub = open_subsystem(scratch.path(), &a.model, &["SRC", "TGT"])?;
    let g = geometry::Geometry::new(a.model).map_err(|e| CliError::Usage(e.to_string()))?;
    let ts = g.track_size_bytes();
    let p = u64::from(a.written);

    // Fill: runs of written tracks go out in writes of up to 8 MiB.
    let tracks_written = (0..g.tracks()).filter(|&t| written(t, p)).count() as u64;
    let pb = bar(a.common.json, g.tracks(), "filling");
    let per_write = (8 << 20) / ts.max(1);
    let mut buf = Vec::new();
    let mut t = 0;
    while t < g.tracks() {
        if !written(t, p) {
            t += 1;
            continue;
        }
        let mut n = 1;
        while n < per_write && t + n < g.tracks() && written(t + n, p) {
            n += 1;
        }
        buf.resize((n * ts) as usize, 0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u64 ^ t).wrapping_mul(31) as u8 | 1;
        }
        sub.write("SRC", t * ts, &buf, false).map_err(ctl("fill"))?;
        t += n;
        pb.set_position(t);
    }
    sub.flush("SRC").map_err(ctl("fill"))?;
    pb.finish_and_clear();

    // The copy: start a full map and run background copy to the end.
    let map = sub
        .create_map(&controller::MapCreate::new(
            "SRC",
            "TGT",
            controller::CopyType::Full,
        ))
        .map_err(ctl("map create"))?;
    let pb = bar(a.common.json, g.tracks(), "copying");
    let t0 = Instant::now();
    sub.start_map(map, false).map_err(ctl("map start"))?;
    let mut done = 0u64;
    loop {
        let r = sub.copy_step(64 << 20).map_err(ctl("copy"))?;
        done += r.grains;
        pb.set_position(done.min(g.tracks()));
        if !r.more {
            break;
        }
    }
    let copy = t0.elapsed();
    pb.finish_and_clear();
    sub.close().map_err(ctl("close"))?;

    // cp of the same file, made durable.
    let src = scratch.path().join("volumes").join("SRC.vol");
    let dst = scratch.path().join("cp.out");
    let t0 = Instant::now();
    let st = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(&src)
        .arg(&dst)
        .status()
        .map_err(|e| CliError::Failed(format!("cannot run cp: {e}")))?;
    if !st.success() {
        return Err(CliError::Failed(format!(
            "cp {} failed: {st}",
            src.display()
        )));
    }
    std::fs::File::open(&dst)
        .and_then(|f| f.sync_data())
        .map_err(|e| CliError::Failed(format!("fdatasync {}: {e}", dst.display())))?;
    let cp = t0.elapsed();

    let data = tracks_written * ts;
    let r = CopyReport {
        model: a.model.to_string(),
        tracks: g.tracks(),
        tracks_written,
        data_bytes: data,
        copy_seconds: copy.as_secs_f64(),
        copy_tracks_per_s: g.tracks() as f64 / copy.as_secs_f64().max(1e-9),
        copy_mib_per_s: mib_s(data, copy),
        cp_seconds: cp.as_secs_f64(),
        cp_mib_per_s: mib_s(data, cp),
        copy_vs_cp: cp.as_secs_f64() / copy.as_secs_f64().max(1e-9),
        dir: a.common.dir.display().to_string(),
        load: load.finish(),
    };
    if a.common.json {
        return crate::output::print_json(&r);
    }
    println!(
        "full copy of a {} ({} tracks, {}% written: {} of data) in {}",
        r.model,
        r.tracks,
        a.written,
        crate::output::human_bytes(data),
        r.dir
    );
    let mut tab = crate::output::Table::new(&["copier", "seconds", "tracks/s", "MiB/s", "vs cp"]);
    tab.row(vec![
        "firmware-sim background copy".into(),
        format!("{:.2}", r.copy_seconds),
        format!("{:.0}", r.copy_tracks_per_s),
        format!("{:.0}", r.copy_mib_per_s),
        ratio(r.copy_mib_per_s, r.cp_mib_per_s),
    ]);
    tab.row(vec![
        "cp --sparse=always + fdatasync".into(),
        format!("{:.2}", r.cp_seconds),
        format!("{:.0}", r.tracks as f64 / r.cp_seconds.max(1e-9)),
        format!("{:.0}", r.cp_mib_per_s),
        "1.00x".into(),
    ]);
    tab.print();
    println!("{}", r.load.line());
    Ok(())
}
