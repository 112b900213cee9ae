//! Interop with real NBD clients against a booted daemon: qemu-img, qemu-io,
//! nbdinfo, nbdcopy, fio's nbd engine and nbdsh (libnbd with strict mode off
//! for out-of-range and malformed requests).

mod common;

use std::path::Path;

use common::{assert_success, read_file, require_tool, run, Daemon};
use rand::{RngCore, SeedableRng};

const MIB: usize = 1 << 20;

/// Writes `len` bytes of seeded random data (with a zero hole in the middle,
/// so zero detection and holes get exercised) to `path`.
fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    let hole = len / 4..len / 2;
    data[hole].fill(0);
    std::fs::write(path, &data).expect("write test file");
    data
}

fn create_volume(d: &Daemon, id: &str, model: &str) {
    let v = d.cli_json(&["volume", "create", "--id", id, "--model", model]);
    assert_eq!(v["id"], id);
}

#[test]
fn qemu_img_info_and_convert_round_trip() {
    require_tool("qemu-img");
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());

    let out = run("qemu-img", &["info", "--output=json", &d.uri("FB00")]);
    assert_success(&out, "qemu-img info");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["virtual-size"], 1u64 << 30, "{info}");

    create_volume(&d, "CONV", "fb:16M");
    let src = tmp.path().join("src.img");
    let data = random_file(&src, 16 * MIB, 7);
    let out = run(
        "qemu-img",
        &[
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src.to_str().unwrap(),
            &d.unix_uri("CONV"),
        ],
    );
    assert_success(&out, "qemu-img convert file -> export");

    let back = tmp.path().join("back.img");
    let out = run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &d.uri("CONV"),
            back.to_str().unwrap(),
        ],
    );
    assert_success(&out, "qemu-img convert export -> file");
    let got = read_file(&back);
    assert_eq!(got.len(), data.len());
    assert!(
        got == data,
        "bytes read back through qemu-img differ from those written"
    );
    assert_success(
        &run("cmp", &[src.to_str().unwrap(), back.to_str().unwrap()]),
        "cmp",
    );
}

fn qemu_io(uri: &str, cmd: &str) -> std::process::Output {
    run("qemu-io", &["-f", "raw", "-c", cmd, uri])
}

/// qemu-io prints "Pattern verification failed" but still exits 0 on a bad
/// `read -P`, so check its output too.
fn assert_pattern(uri: &str, pattern: &str, range: &str) {
    let out = qemu_io(uri, &format!("read -P {pattern} {range}"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("verification failed") && !text.contains("error"),
        "{uri}: expected pattern {pattern} at {range}:\n{text}"
    );
}

#[test]
fn qemu_io_target_keeps_point_in_time_image() {
    require_tool("qemu-io");
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());

    // nocopy map FB00 -> FB01.
    assert_success(
        &qemu_io(&d.uri("FB00"), "write -P 0xab 0 1M"),
        "qemu-io write 0xab",
    );
    let m = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy",
    ]);
    let id = m["id"].to_string();
    let m = d.cli_json(&["map", "start", &id]);
    assert_eq!(m["state"], "copying", "{m}");
    assert_success(
        &qemu_io(&d.uri("FB00"), "write -P 0xcd 0 1M"),
        "qemu-io write 0xcd",
    );
    assert_pattern(&d.uri("FB01"), "0xab", "0 1M");
    assert_pattern(&d.uri("FB00"), "0xcd", "0 1M");
    // Partly overwritten grain: the target still sees the whole old grain.
    assert_success(
        &qemu_io(&d.uri("FB00"), "write -P 0x11 1M 4k"),
        "qemu-io write 4k",
    );
    assert_pattern(&d.uri("FB01"), "0x00", "1M 64k");

    // full map FB02 -> FB03 with background copy, overwritten while copying.
    assert_success(
        &qemu_io(&d.uri("FB02"), "write -P 0x5a 0 4M"),
        "qemu-io write 0x5a",
    );
    let m = d.cli_json(&[
        "map",
        "create",
        "--source",
        "FB02",
        "--target",
        "FB03",
        "--type",
        "full",
        "--copy-rate",
        "150",
    ]);
    let id = m["id"].to_string();
    d.cli_json(&["map", "start", &id]);
    assert_success(
        &qemu_io(&d.uri("FB02"), "write -P 0xa5 0 2M"),
        "qemu-io overwrite source",
    );
    let m = d.cli_json(&["map", "wait", &id, "--timeout", "120"]);
    assert_eq!(m["state"], "idle_or_copied", "{m}");
    assert_eq!(m["progress_percent"], 100.0, "{m}");
    assert_pattern(&d.uri("FB03"), "0x5a", "0 4M");
    assert_pattern(&d.uri("FB02"), "0xa5", "0 2M");

    // Restore copies the target's image back onto the source.
    let r = d.cli_json(&["map", "restore", &id]);
    assert_eq!(r["source"], "FB03", "{r}");
    assert_eq!(r["target"], "FB02", "{r}");
    let rid = r["id"].to_string();
    assert_pattern(&d.uri("FB02"), "0x5a", "0 4M");
    let r = d.cli_json(&["map", "wait", &rid, "--timeout", "120"]);
    assert_eq!(r["progress_percent"], 100, "{r}");
    assert_pattern(&d.uri("FB02"), "0x5a", "0 4M");
}

#[test]
fn nbdinfo_json_and_map() {
    require_tool("nbdinfo");
    require_tool("qemu-io");
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    create_volume(&d, "INFO", "fb:16M");

    let out = run("nbdinfo", &["--json", &d.uri("INFO")]);
    assert_success(&out, "nbdinfo --json");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &info["exports"][0];
    assert_eq!(e["export-name"], "INFO", "{info}");
    assert_eq!(e["export-size"], 16 * MIB as u64, "{info}");
    assert_eq!(e["block_size_minimum"], 512, "{info}");
    assert_eq!(e["block_size_preferred"], 4096, "{info}");
    assert_eq!(e["block_size_maximum"], 32 * MIB as u64, "{info}");
    assert_eq!(e["can_flush"], true, "{info}");

    let out = run("nbdinfo", &["--list", "--json", &d.uri("")]);
    assert_success(&out, "nbdinfo --list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list["exports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["export-name"].as_str())
        .collect();
    for v in ["CKD00", "FB00", "FB03", "INFO"] {
        assert!(names.contains(&v), "{v} missing from {names:?}");
    }

    // Fresh volume: one hole. After writing 1 MiB at 4 MiB: hole, data, hole.
    assert_success(
        &qemu_io(&d.uri("INFO"), "write -P 0x42 4M 1M"),
        "qemu-io write",
    );
    let out = run("nbdinfo", &["--map", "--json", &d.uri("INFO")]);
    assert_success(&out, "nbdinfo --map");
    let map: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs: Vec<(u64, u64, u64)> = map
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["offset"].as_u64().unwrap(),
                r["length"].as_u64().unwrap(),
                r["type"].as_u64().unwrap(),
            )
        })
        .collect();
    let m = MIB as u64;
    assert_eq!(
        runs,
        vec![(0, 4 * m, 3), (4 * m, m, 0), (5 * m, 11 * m, 3)],
        "{map}"
    );
}

#[test]
fn nbdcopy_whole_export_both_ways() {
    require_tool("nbdcopy");
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    create_volume(&d, "COPY", "fb:32M");
    let src = tmp.path().join("src.img");
    let data = random_file(&src, 32 * MIB, 11);
    let out = run(
        "nbdcopy",
        &["--flush", src.to_str().unwrap(), &d.unix_uri("COPY")],
    );
    assert_success(&out, "nbdcopy file -> export");
    let back = tmp.path().join("back.img");
    let out = run("nbdcopy", &[&d.uri("COPY"), back.to_str().unwrap()]);
    assert_success(&out, "nbdcopy export -> file");
    assert!(
        read_file(&back) == data,
        "nbdcopy round trip changed the data"
    );
}

#[test]
fn fio_nbd_engine_randrw_with_verify() {
    require_tool("fio");
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    create_volume(&d, "FIO", "fb:32M");
    let uri = format!("--uri={}", d.unix_uri("FIO"));
    let out = run(
        "fio",
        &[
            "--name=randrw",
            "--ioengine=nbd",
            &uri,
            "--rw=randrw",
            "--bs=4k",
            "--iodepth=16",
            "--size=32m",
            "--io_size=16m",
            "--verify=crc32c",
            "--verify_fatal=1",
            // No local-*-verify.state file in the crate directory.
            "--verify_state_save=0",
            "--do_verify=1",
            "--output-format=json",
        ],
    );
    assert_success(&out, "fio randrw verify");
    // fio prints "fio: connected to NBD server" before the JSON document.
    let text = String::from_utf8_lossy(&out.stdout);
    let json = &text[text.find('{').unwrap_or(0)..];
    let report: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("fio JSON: {e}\n{text}"));
    let job = &report["jobs"][0];
    assert_eq!(job["error"], 0, "{job}");
    assert!(job["write"]["io_bytes"].as_u64().unwrap() > 0, "{job}");
    assert!(job["read"]["io_bytes"].as_u64().unwrap() > 0, "{job}");
}

/// Runs a Python snippet in nbdsh (libnbd) with `h` connected to `uri` with
/// strict mode off; prints `OK` at the end. `expect(NAME, fn, args)` checks
/// that the call fails with errno NAME (libnbd 1.14 reports `e.errno` as
/// the name, e.g. `'EINVAL'`).
fn nbdsh(uri: &str, body: &str, structured: bool) -> std::process::Output {
    require_tool("nbdsh");
    let script = format!(
        "h.set_strict_mode(0)\n\
         h.set_request_structured_replies({structured})\n\
         h.connect_uri({uri:?})\n\
         def expect(err, fn, *args, **kw):\n\
         \x20   try:\n\
         \x20       fn(*args, **kw)\n\
         \x20   except nbd.Error as e:\n\
         \x20       assert e.errno == err, 'expected %s, got %r (%s)' % (err, e.errno, e.string)\n\
         \x20       return\n\
         \x20   raise AssertionError('no error from %s' % fn.__name__)\n\
         {body}\n\
         print('OK')\n",
        structured = if structured { "True" } else { "False" },
    );
    std::process::Command::new("nbdsh")
        .args(["-c", &script])
        .env(
            "PATH",
            format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .output()
        .expect("run nbdsh")
}

#[test]
fn nbdsh_bad_requests_get_errno_and_connection_stays_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    create_volume(&d, "NEG", "fb:1M");
    let body = "size = h.get_size()\n\
        assert size == 1048576, size\n\
        expect('EINVAL', h.pread, 4096, size)\n\
        expect('EINVAL', h.pread, 4096, size - 512)\n\
        expect('ENOSPC', h.pwrite, b'x' * 4096, size)\n\
        expect('EINVAL', h.trim, 4096, size)\n\
        expect('ENOSPC', h.zero, 4096, size)\n\
        expect('EINVAL', h.pread, 1, 1)\n\
        expect('EINVAL', h.pread, 512, 0, flags=nbd.CMD_FLAG_REQ_ONE)\n\
        expect('EINVAL', h.pread, 64 << 20, 0)\n\
        h.pwrite(b'\\x5a' * 4096, 8192)\n\
        assert h.pread(4096, 8192) == b'\\x5a' * 4096\n\
        h.flush()\n\
        h.shutdown()";
    for structured in [true, false] {
        let out = nbdsh(&d.unix_uri("NEG"), body, structured);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("OK"),
            "nbdsh (structured replies {structured}):\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn stdio_mode_and_socket_activation_serve_a_volume() {
    require_tool("nbdinfo");
    require_tool("nbdsh");
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::BIN;

    // stdin/stdout mode, as nbdsh's connect_command starts it.
    let dir = tmp.path().join("stdio");
    let body = "h.pwrite(b'\\xee' * 512, 0)\n\
        h.flush()\n\
        assert h.pread(512, 0) == b'\\xee' * 512\n\
        assert h.get_size() == 1 << 30, h.get_size()";
    let script = format!(
        "h.connect_command([{bin:?}, 'serve-stdio', '--data-dir', {:?}, '--export', 'FB00'])\n{body}\nprint('OK')\n",
        dir.to_str().unwrap()
    );
    let out = std::process::Command::new("nbdsh")
        .args(["-c", &script])
        .env(
            "PATH",
            format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .output()
        .expect("run nbdsh");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "serve-stdio via nbdsh connect_command:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // systemd socket activation: nbdinfo starts the daemon with LISTEN_FDS.
    let dir = tmp.path().join("activated");
    let out = run(
        "nbdinfo",
        &[
            "--size",
            "--",
            "[",
            bin,
            "boot",
            "--no-api",
            "--default-export",
            "FB01",
            "--data-dir",
            dir.to_str().unwrap(),
            "]",
        ],
    );
    assert_success(&out, "nbdinfo -- [ firmware-sim boot ]");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (1u64 << 30).to_string()
    );
}

#[test]
fn event_ipl_keeps_an_open_nbd_connection_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let body = format!(
        "import subprocess\n\
         h.pwrite(b'\\x42' * 4096, 0)\n\
         r = subprocess.run([{bin:?}, 'event', 'ipl', '--api', {api:?}], capture_output=True, text=True)\n\
         assert r.returncode == 0, r.stderr\n\
         assert 'event: ipl' in r.stdout, r.stdout\n\
         assert h.pread(4096, 0) == b'\\x42' * 4096\n\
         h.pwrite(b'\\x43' * 4096, 4096)\n\
         h.flush()\n\
         assert h.pread(4096, 4096) == b'\\x43' * 4096",
        bin = common::BIN,
        api = d.api,
    );
    let out = nbdsh(&d.uri("FB00"), &body, true);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "NBD connection across event ipl:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.log_text().contains("IPL: 0 map(s) restored"),
        "{}",
        d.log_text()
    );
}

/// `read_only = true` on one volume in the config, and `--read-only` for
/// all: the export flags say read-only (nbdinfo), writes, trims and zeroing
/// get EPERM from the server (libnbd's own checks off), reads still work,
/// and the bytes are unchanged; a volume not marked stays writable.
#[test]
fn read_only_exports_refuse_writes_with_eperm() {
    require_tool("nbdinfo");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("ro.toml");
    std::fs::write(
        &cfg,
        "id = \"RO\"\n\
         [[volumes]]\nid = \"GOLD\"\nmodel = \"fb:1M\"\nread_only = true\n\
         [[volumes]]\nid = \"WORK\"\nmodel = \"fb:1M\"\n",
    )
    .unwrap();
    // Refused, and the bytes at 0 stay what they were (`{before}`).
    let refuse = |before: &str| {
        format!(
            "expect('EPERM', h.pwrite, b'x' * 4096, 0)\n\
             expect('EPERM', h.trim, 4096, 0)\n\
             expect('EPERM', h.zero, 4096, 0)\n\
             assert h.pread(4096, 0) == {before}\n\
             h.shutdown()"
        )
    };
    let accept = "h.pwrite(b'\\x5a' * 4096, 0)\n\
        assert h.pread(4096, 0) == b'\\x5a' * 4096\n\
        h.shutdown()";
    let ok = |out: std::process::Output, what: &str| {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("OK"),
            "{what}:\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let read_only_flag = |d: &Daemon, vol: &str| {
        let out = run("nbdinfo", &["--json", &d.uri(vol)]);
        assert_success(&out, "nbdinfo --json");
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        info["exports"][0]["is_read_only"].as_bool().unwrap()
    };

    let d = Daemon::boot_with(tmp.path(), &["--config", cfg.to_str().unwrap()]);
    assert!(read_only_flag(&d, "GOLD"), "GOLD is marked read_only");
    assert!(!read_only_flag(&d, "WORK"), "WORK is not");
    ok(
        nbdsh(&d.unix_uri("GOLD"), &refuse("bytes(4096)"), true),
        "writes to GOLD",
    );
    ok(nbdsh(&d.unix_uri("WORK"), accept, true), "writes to WORK");
    drop(d);

    let d = Daemon::boot_with(
        tmp.path(),
        &["--config", cfg.to_str().unwrap(), "--read-only"],
    );
    assert!(
        read_only_flag(&d, "WORK"),
        "--read-only covers every volume"
    );
    ok(
        nbdsh(&d.unix_uri("WORK"), &refuse("b'\\x5a' * 4096"), false),
        "writes to WORK under --read-only",
    );
    drop(d);

    // The same for every volume from the config's [nbd] section.
    let all = tmp.path().join("ro-all.toml");
    let text = std::fs::read_to_string(&cfg).unwrap() + "[nbd]\nread_only = true\n";
    std::fs::write(&all, text).unwrap();
    let d = Daemon::boot_with(tmp.path(), &["--config", all.to_str().unwrap()]);
    assert!(
        read_only_flag(&d, "WORK"),
        "[nbd] read_only covers every volume"
    );
}
