//! `bench cow`: random 4 KiB first writes right after a nocopy snapshot
//! starts, beside the same writes (same offsets, same threads) to a filled
//! volume that no map touches.
//!
//! Both volumes are filled first, so the snapshot has data to preserve and
//! the plain volume's writes overwrite data too. Each round starts a fresh
//! snapshot into an empty target (the previous map is deleted and the
//! target discarded whole, so its file holds no blocks: a first write
//! allocates them, as into a new volume), so every round's writes are
//! first writes again; rounds alternate snapshot and plain, and the median
//! is reported. Offsets come from a seeded generator (`--seed`), so a run
//! can be repeated exactly.
//!
//! Writes are in flight `--qd` at a time, handed to the controller in
//! batches of `--batch` (`Subsystem::write_many`, as the NBD server hands
//! over the small writes a client has in flight): `--qd 16 --batch 8` is
//! two writers of eight, like the daemon under fio at QD16; `--batch 1` is
//! one write per call on `--qd` threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use geometry::DeviceModel;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{bar, ctl, open_subsystem, ratio, Common, Load, Scratch};
use crate::error::CliError;

/// `bench cow` options.
#[derive(Debug, Args)]
pub struct CowArgs {
    /// Device model of the volumes.
    #[arg(long, default_value = "fb:1G")]
    model: DeviceModel,
    /// Writes per round (default: half as many as the volume has tracks).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    writes: Option<u64>,
    /// Writes in flight (like an NBD client's queue depth), 1-1024.
    #[arg(long = "qd", visible_alias = "threads", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    qd: u64,
    /// Writes per controller call (1: one at a time on `--qd` threads), 1-64.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    batch: u64,
    /// Rounds of each kind (median reported), 1-100.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// Seed of the write offsets.
    #[arg(long, default_value_t = 4242)]
    seed: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Serialize)]
struct CowReport {
    model: String,
    writes: usize,
    qd: usize,
    batch: usize,
    threads: usize,
    grains_copied_per_round: u64,
    snapshot_iops: f64,
    plain_iops: f64,
    snapshot_vs_plain: f64,
    dir: String,
    load: Load,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `offsets` as 4 KiB writes on `threads` threads, `batch` per call
/// (one `write` when 1, else `write_many`); returns the elapsed time.
fn write_all(
    sub: &controller::Subsystem,
    volume: &str,
    offsets: &[u64],
    threads: usize,
    batch: usize,
) -> Result<Duration, CliError> {
    let next = AtomicUsize::new(0);
    let data = vec![0x22u8; 4096];
    let batch = batch.max(1);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<(), CliError> {
                    loop {
                        let i = next.fetch_add(batch, Ordering::Relaxed);
                        let Some(mine) = offsets.get(i..offsets.len().min(i + batch)) else {
                            return Ok(());
                        };
                        if let [off] = mine {
                            sub.write(volume, *off, &data, false)
                                .map_err(ctl("bench write"))?;
                            continue;
                        }
                        let writes: Vec<(u64, &[u8])> =
                            mine.iter().map(|&off| (off, &data[..])).collect();
                        for r in sub.write_many(volume, &writes) {
                            r.map_err(ctl("bench write"))?;
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| CliError::Failed("a bench writer panicked".into()))?
        })
    })?;
    Ok(t0.elapsed())
}

pub(super) fn run(a: CowArgs) -> Result<(), CliError> {
    let scratch = Scratch::new(&a.common.dir, "cow")?;
    let load = Load::start();
    let g = geometry::Geometry::new(a.model).map_err(|e| CliError::Usage(e.to_string()))?;
    let sub = open_subsystem(scratch.path(), &a.model, &["SRC", "SNAP", "PLAIN"])?;
    let size = g.size_bytes();
    let chunk = vec![0x5au8; 8 << 20];
    let pb = bar(a.common.json, 2 * size, "filling");
    for v in ["SRC", "PLAIN"] {
        let mut off = 0;
        while off < size {
            let n = (size - off).min(chunk.len() as u64);
            sub.write(v, off, &chunk[..n as usize], false)
                .map_err(ctl("fill"))?;
            off += n;
            pb.inc(n);
        }
        sub.flush(v).map_err(ctl("fill"))?;
    }
    pb.finish_and_clear();

    // clap keeps every count in range (QA: 0 became 1 without a word).
    let n = a.writes.unwrap_or((g.tracks() / 2).max(1)) as usize;
    let qd = a.qd as usize;
    let batch = (a.batch as usize).min(qd);
    let threads = qd.div_ceil(batch);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let offsets: Vec<u64> = (0..n)
        .map(|_| rng.random_range(0..size / 4096) * 4096)
        .collect();

    let (mut snap, mut plain, mut copied) = (Vec::new(), Vec::new(), 0);
    let pb = bar(a.common.json, 2 * a.rounds, "writing");
    for _ in 0..a.rounds {
        let map = sub
            .create_map(&controller::MapCreate::new(
                "SRC",
                "SNAP",
                controller::CopyType::Nocopy,
            ))
            .map_err(ctl("map create"))?;
        sub.start_map(map, false).map_err(ctl("map start"))?;
        let before = sub.metrics().cow_copies;
        let d = write_all(&sub, "SRC", &offsets, threads, batch)?;
        copied = sub.metrics().cow_copies - before;
        snap.push(n as f64 / d.as_secs_f64().max(1e-9));
        sub.delete_map(map, true).map_err(ctl("map delete"))?;
        // Copying into blocks a former round allocated is much cheaper on
        // a disk filesystem than allocating them: empty the target.
        sub.discard("SNAP", 0, size, false)
            .map_err(ctl("discard the snapshot target"))?;
        sub.flush("SNAP")
            .map_err(ctl("discard the snapshot target"))?;
        pb.inc(1);
        let d = write_all(&sub, "PLAIN", &offsets, threads, batch)?;
        plain.push(n as f64 / d.as_secs_f64().max(1e-9));
        pb.inc(1);
    }
    pb.finish_and_clear();
    sub.close().map_err(ctl("close"))?;

    let (s, p) = (median(snap), median(plain));
    let r = CowReport {
        model: a.model.to_string(),
        writes: n,
        qd,
        batch,
        threads,
        grains_copied_per_round: copied,
        snapshot_iops: s,
        plain_iops: p,
        snapshot_vs_plain: if p > 0.0 { s / p } else { 0.0 },
        dir: a.common.dir.display().to_string(),
        load: load.finish(),
    };
    if a.common.json {
        return crate::output::print_json(&r);
    }
    println!(
        "{} random 4 KiB writes, {} in flight on {} threads ({} per call), {} volumes in {}, \
         median of {} rounds",
        r.writes, r.qd, r.threads, r.batch, r.model, r.dir, a.rounds
    );
    let mut tab = crate::output::Table::new(&["writes to", "IOPS", "vs plain"]);
    tab.row(vec![
        format!(
            "a volume whose nocopy snapshot just started ({} grains copied)",
            r.grains_copied_per_round
        ),
        format!("{s:.0}"),
        ratio(s, p),
    ]);
    tab.row(vec![
        "a filled volume no map touches".into(),
        format!("{p:.0}"),
        "1.00x".into(),
    ]);
    tab.print();
    println!("{}", r.load.line());
    Ok(())
}
