//! `bench nbd`: fio's nbd engine against `firmware-sim boot` as users run it
//! (this binary, default config, a real data dir under `--dir`, a unix
//! socket): 4 KiB random read and write and 1 MiB sequential read and write
//! at the chosen queue depth. For a side-by-side with nbdkit and qemu-nbd,
//! see scripts/bench-daemon in the source tree.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use geometry::DeviceModel;
use serde::Serialize;

use super::{bar, Common, Load, Scratch};
use crate::error::CliError;

/// `bench nbd` options.
#[derive(Debug, Args)]
pub struct NbdArgs {
    /// Device model of the volume served.
    #[arg(long, default_value = "fb:1G")]
    model: DeviceModel,
    /// Seconds per fio run, 1-3600.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    runtime: u64,
    /// fio queue depth, 1-1024.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    qd: u32,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Serialize)]
struct Cell {
    workload: String,
    iops: f64,
    mib_per_s: f64,
}

#[derive(Debug, Serialize)]
struct NbdReport {
    model: String,
    qd: u32,
    runtime_s: u64,
    cells: Vec<Cell>,
    dir: String,
    load: Load,
}

/// Kills the daemon when dropped (also on error).
struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn boot(scratch: &Scratch, model: &DeviceModel) -> Result<(Daemon, String), CliError> {
    let cfg = scratch.path().join("bench.toml");
    std::fs::write(
        &cfg,
        format!("id = \"BENCH\"\n[[volumes]]\nid = \"VOL\"\nmodel = \"{model}\"\n"),
    )
    .map_err(|e| CliError::Failed(format!("write {}: {e}", cfg.display())))?;
    let sock = scratch.path().join("nbd.sock");
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot find this program: {e}")))?;
    let mut child = Command::new(exe)
        .arg("boot")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(scratch.path().join("data"))
        .arg("--nbd-unix")
        .arg(&sock)
        .args(["--api", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CliError::Failed(format!("cannot start firmware-sim boot: {e}")))?;
    let out = child.stdout.take();
    let daemon = Daemon(child);
    // A reader thread drains the daemon's stdout for its whole life (a full
    // pipe would block it) and reports the `ready:` line.
    let (tx, rx) = mpsc::channel();
    if let Some(o) = out {
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(o).lines().map_while(Result::ok) {
                if l.starts_with("ready:") {
                    let _ = tx.send(());
                }
            }
        });
    }
    let ready = rx.recv_timeout(Duration::from_secs(60)).is_ok();
    if !ready {
        return Err(CliError::Failed(
            "firmware-sim boot exited before it was ready (run it by hand to see why)".into(),
        ));
    }
    Ok((daemon, format!("nbd+unix:///VOL?socket={}", sock.display())))
}

fn fio(uri: &str, qd: u32, args: &[&str]) -> Result<(f64, f64), CliError> {
    let out = Command::new("fio")
        .args(["--name=b", "--ioengine=nbd", "--output-format=json"])
        .arg(format!("--iodepth={qd}"))
        .arg(format!("--uri={uri}"))
        .args(args)
        .output()
        .map_err(|e| CliError::Failed(format!("cannot run fio (is it installed?): {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.find('{').map(|i| &text[i..]).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        CliError::Failed(format!(
            "fio gave no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    let job = &v["jobs"][0];
    let dir = if job["read"]["io_bytes"].as_u64().unwrap_or(0) > 0 {
        &job["read"]
    } else {
        &job["write"]
    };
    let iops = dir["iops"].as_f64().unwrap_or(0.0);
    let bw = dir["bw_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64;
    Ok((iops, bw))
}

pub(super) fn run(a: NbdArgs) -> Result<(), CliError> {
    if Command::new("fio").arg("--version").output().is_err() {
        return Err(CliError::Failed(
            "bench nbd needs fio with its nbd engine (apt-get install fio)".into(),
        ));
    }
    let scratch = Scratch::new(&a.common.dir, "nbd")?;
    let load = Load::start();
    let (daemon, uri) = boot(&scratch, &a.model)?;
    let g = geometry::Geometry::new(a.model).map_err(|e| CliError::Usage(e.to_string()))?;
    let size = format!("--size={}", g.size_bytes());
    let runtime = format!("--runtime={}", a.runtime);
    let cells: [(&str, &str, &str); 4] = [
        ("4 KiB random write", "randwrite", "4k"),
        ("4 KiB random read", "randread", "4k"),
        ("1 MiB sequential write", "write", "1m"),
        ("1 MiB sequential read", "read", "1m"),
    ];
    let pb = bar(a.common.json, cells.len() as u64 + 1, "fio");
    let t0 = Instant::now();
    // Fill first, so reads move real data.
    fio(&uri, a.qd, &["--rw=write", "--bs=1m", &size])?;
    pb.inc(1);
    let mut out = Vec::new();
    for (name, rw, bs) in cells {
        let (iops, mib) = fio(
            &uri,
            a.qd,
            &[
                &format!("--rw={rw}"),
                &format!("--bs={bs}"),
                &size,
                "--time_based",
                &runtime,
            ],
        )?;
        out.push(Cell {
            workload: name.into(),
            iops,
            mib_per_s: mib,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    drop(daemon);
    let r = NbdReport {
        model: a.model.to_string(),
        qd: a.qd,
        runtime_s: a.runtime,
        cells: out,
        dir: a.common.dir.display().to_string(),
        load: load.finish(),
    };
    if a.common.json {
        return crate::output::print_json(&r);
    }
    println!(
        "fio nbd engine, QD{}, {} s per run, one {} volume in {} ({:.0} s in all)",
        r.qd,
        r.runtime_s,
        r.model,
        r.dir,
        t0.elapsed().as_secs_f64()
    );
    let mut tab = crate::output::Table::new(&["workload", "IOPS", "MiB/s"]);
    for c in &r.cells {
        tab.row(vec![
            c.workload.clone(),
            format!("{:.0}", c.iops),
            format!("{:.0}", c.mib_per_s),
        ]);
    }
    tab.print();
    println!("{}", r.load.line());
    Ok(())
}
