"""Tests of the firmware_sim package against the real daemon, with NBD
through libnbd's Python binding (python3-libnbd)."""

import os
import subprocess

import nbd
import pytest

from firmware_sim import ApiError, ApiUnreachable, BootError, Subsystem

SECTOR = 512


def nbd_handle(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def test_boots_default_and_serves_every_volume(subsystem):
    names = [v["id"] for v in subsystem.client.volumes()]
    assert names == ["CKD00", "CKD01", "CKD02", "CKD03", "FB00", "FB01", "FB02", "FB03"]
    h = nbd_handle(subsystem.uri("FB00"))
    assert h.get_size() == 1 << 30
    h.shutdown()
    assert subsystem.client.health()["subsystem"] == "SS01"


def test_point_in_time_copy_keeps_the_old_bytes(subsystem):
    h = nbd_handle(subsystem.uri("FB00"))
    h.pwrite(b"A" * 65536, 0)
    h.flush()
    m = subsystem.client.create_map("FB00", "FB01", copy_type="nocopy")
    subsystem.client.start_map(m["id"])
    h.pwrite(b"B" * 65536, 0)
    h.flush()
    snap = nbd_handle(subsystem.uri("FB01"))
    assert snap.pread(65536, 0) == b"A" * 65536
    assert h.pread(65536, 0) == b"B" * 65536
    h.shutdown()
    snap.shutdown()


def test_api_errors_carry_their_kind(subsystem):
    with pytest.raises(ApiError) as e:
        subsystem.client.map(99)
    assert e.value.kind == "unknown_map"
    assert e.value.status == 404


def test_cli_runs_against_this_subsystem(subsystem):
    out = subsystem.run("volume", "list", json=True)
    assert '"FB03"' in out.stdout
    bad = subsystem.run("map", "show", "99", check=False)
    assert bad.returncode != 0
    assert "unknown map 99" in bad.stderr


CONFIG = """
id = "SSPY"
durability = "strict"

[[volumes]]
id = "SRC"
model = "fb:16M"

[[volumes]]
id = "TGT"
model = "fb:16M"
"""


@pytest.mark.subsystem(config=CONFIG)
def test_marker_config_and_a_crash_mid_session_then_ipl(subsystem):
    assert [v["id"] for v in subsystem.client.volumes()] == ["SRC", "TGT"]
    s = subsystem.client.start_session("BK1", ["SRC:0-15"], ["TGT"], program="NIGHTLY")
    assert s["state"] == "active"
    h = nbd_handle(subsystem.uri("SRC"))
    h.pwrite(b"x" * SECTOR, 0, nbd.CMD_FLAG_FUA)
    h.shutdown()
    subsystem.crash()
    assert not subsystem.running
    subsystem.ipl()
    s = subsystem.client.session("BK1")
    assert (s["state"], s["reason"]) == ("terminated", "ipl")
    # The acknowledged write survived the kill.
    h = nbd_handle(subsystem.uri("SRC"))
    assert h.pread(SECTOR, 0) == b"x" * SECTOR
    h.shutdown()


def test_two_subsystems_from_the_factory_do_not_clash(subsystem_factory):
    a = subsystem_factory()
    b = subsystem_factory()
    assert a.api_url != b.api_url and a.nbd_base != b.nbd_base
    assert a.data_dir != b.data_dir


def test_a_bad_config_is_a_boot_error_naming_the_field(tmp_path):
    with pytest.raises(BootError) as e:
        Subsystem(config='id = "SS01"\n[[volumes]]\nid = "V"\nmodel = "banana"\n', workdir=tmp_path)
    assert "volumes[0].model" in str(e.value)


def test_reset_event_reports_decisions(subsystem):
    subsystem.client.start_session("R1", ["FB00:0-3"], ["FB01"])
    report = subsystem.reset(lose_volatile=False)
    decided = {d["session"]: d["outcome"] for d in report["decisions"]}
    assert decided["R1"] == "resumed"


def test_missing_binary_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("FIRMWARE_SIM_BIN", str(tmp_path / "nope"))
    with pytest.raises(BootError, match="not an executable"):
        Subsystem()


def test_version_of_the_binary_answers():
    from firmware_sim import find_binary

    out = subprocess.run([find_binary(), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "firmware-sim" in out.stdout


def test_ipl_keeps_the_ports_and_wait_map_waits(subsystem):
    api_before, nbd_before = subsystem.api_url, subsystem.nbd_base
    m = subsystem.client.create_map("FB02", "FB03", copy_type="full", copy_rate=150)
    with pytest.raises(ApiError, match="not started"):
        subsystem.client.wait_map(m["id"], timeout=5)
    subsystem.client.start_map(m["id"])
    done = subsystem.client.wait_map(m["id"], timeout=120)
    assert done["state"] == "idle_or_copied" and done["progress_percent"] == 100
    subsystem.crash()
    subsystem.ipl()
    assert (subsystem.api_url, subsystem.nbd_base) == (api_before, nbd_before)


def test_group_membership_from_python(subsystem):
    a = subsystem.client.create_map("FB00", "FB01", copy_type="nocopy")
    b = subsystem.client.create_map("FB02", "FB03", copy_type="nocopy")
    subsystem.client.create_group(9, [a["id"]])
    members = subsystem.client.add_to_group(9, b["id"])
    assert sorted(m["id"] for m in members) == sorted([a["id"], b["id"]])
    members = subsystem.client.remove_from_group(9, a["id"])
    assert [m["id"] for m in members] == [b["id"]]
    with pytest.raises(ApiError) as e:
        subsystem.client.add_to_group(9, 99)
    assert e.value.kind == "unknown_map"


def test_a_failed_boot_leaves_no_directory_behind(monkeypatch):
    import glob
    import tempfile

    before = set(glob.glob(tempfile.gettempdir() + "/firmware-sim-*"))
    with pytest.raises(BootError):
        Subsystem(config='id = "SS01"\n[[volumes]]\nid = "V"\nmodel = "banana"\n')
    # (The boot may sweep stale directories of dead processes: fewer is fine.)
    assert not set(glob.glob(tempfile.gettempdir() + "/firmware-sim-*")) - before


def test_names_hosts_and_logical_completion_from_python(subsystem):
    c = subsystem.client
    m = c.create_map("FB00", "FB01", copy_type="nocopy", name="nightly")
    assert m["name"] == "nightly"
    g = c.create_group(None, [m["id"]], name="db")
    assert (g["name"], g["maps"]) == ("db", [m["id"]])
    c.start_group("db")
    assert c.map("nightly")["state"] == "copying"
    assert c.map("nightly")["id"] == m["id"]
    s = c.start_session("K1", "FB02:0-15", "FB03", program="DSS", host="SYS2", copy_rate=0)
    assert (s["host"], s["state"]) == ("SYS2", "active")
    assert c.release_session("K1")["logically_complete"] is True
    # The IPL of host SYS2 alone ends its session; the map is untouched.
    r = c.event("ipl", host="SYS2")
    decision = [d for d in r["decisions"] if d["session"] == "K1"][0]
    assert decision["reason"] == "ipl"
    assert "logically complete" in decision["why"]
    assert c.map("nightly")["state"] == "copying"


def test_https_api_with_the_ca(tmp_path):
    """A daemon booted with --api-tls is reached over https with api_ca."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    args = ["--api-tls", "--tls-cert", str(cert), "--tls-key", str(key)]
    with Subsystem(args=args, api_ca=cert) as s:
        assert s.api_url.startswith("https://")
        assert [v["id"] for v in s.client.volumes()][:1] == ["CKD00"]
        # An IPL boots with the same arguments: still https.
        s.crash()
        s.ipl()
        assert s.api_url.startswith("https://")
        assert [v["id"] for v in s.client.volumes()][:1] == ["CKD00"]


def test_wait_map_refuses_a_map_that_never_finishes(subsystem):
    """A nocopy map (or copy rate 0) copies only on write: waiting for it is
    an error at once, as in the Rust client and ``map wait``."""
    m = subsystem.client.create_map("FB00", "FB01", copy_type="nocopy")
    subsystem.client.start_map(m["id"])
    with pytest.raises(ApiError, match="never finishes") as e:
        subsystem.client.wait_map(m["id"], timeout=30)
    assert e.value.kind == "wrong_state"


def test_a_killed_test_process_leaves_no_daemon(tmp_path):
    """The daemon watches its stdin pipe: when the process that booted it is
    killed (no cleanup at all), the daemon stops by itself."""
    import os
    import signal
    import sys
    import time

    script = tmp_path / "boot_and_hang.py"
    script.write_text(
        "import sys, time\n"
        "from firmware_sim import Subsystem\n"
        "s = Subsystem()\n"
        "print(s.proc.pid, s.workdir, flush=True)\n"
        "time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pid, workdir = p.stdout.readline().split(maxsplit=1)
    daemon, workdir = int(pid), workdir.strip()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(daemon, 0)
        except ProcessLookupError:
            break
        # A zombie is gone too (its parent, now init, reaps it).
        try:
            with open(f"/proc/{daemon}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(daemon, signal.SIGKILL)
        raise AssertionError("the daemon outlived the killed test process by 30 s")
    # The killed process's directory is stale, and the next Subsystem
    # removes it (QA: such directories stayed in $TMPDIR for good).
    assert os.path.isdir(workdir), "the killed process made no directory of its own"
    with Subsystem():
        pass
    assert not os.path.exists(workdir), "a stale directory was not swept"


def test_a_live_processs_directory_is_never_swept():
    with Subsystem() as a:
        with Subsystem() as b:
            assert a.workdir.exists() and b.workdir.exists()
            a.crash()  # its daemon is gone, its process (this one) is not
            with Subsystem():
                pass
            assert a.workdir.exists(), "a live process's directory was swept"


pytest_plugins = ["pytester"]


def test_a_failed_test_shows_every_daemons_log_and_leaves_no_volume_files(pytester):
    pytester.makepyfile(
        """
        def test_fails(subsystem_factory):
            subsystem_factory()
            subsystem_factory()
            assert False, "deliberate"

        def test_passes(subsystem_factory):
            subsystem_factory()
        """
    )
    base = pytester.path / "base"
    result = pytester.runpytest_subprocess(f"--basetemp={base}")
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert out.count("--- firmware-sim log (") == 2, out
    assert "deliberate" in out
    left = [p for p in base.rglob("*") if p.is_file()]
    assert left == [], f"data directories were left: {left}"


def test_marker_misuse_is_a_usage_error_not_the_default_subsystem(pytester):
    # QA: a positional config, a misspelled keyword and a string for args
    # booted the default subsystem, or one argument per character.
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.subsystem('id = "X"')
        def test_positional(subsystem):
            pass

        @pytest.mark.subsystem(conf='id = "X"')
        def test_misspelled(subsystem):
            pass

        @pytest.mark.subsystem(args="--read-only")
        def test_string_args(subsystem):
            pass
        """
    )
    result = pytester.runpytest_subprocess(f"--basetemp={pytester.path / 'base'}")
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    assert "takes keywords only" in out
    assert "unknown keyword conf" in out
    assert "must be a list of boot arguments" in out


def test_errors_cross_processes_and_a_dead_daemon_is_unreachable(subsystem):
    import pickle

    with pytest.raises(ApiError) as e:
        subsystem.client.map(99)
    back = pickle.loads(pickle.dumps(e.value))
    assert (type(back), back.status, back.kind, back.message) == \
        (ApiError, 404, "unknown_map", e.value.message)
    subsystem.crash()
    with pytest.raises(ApiUnreachable) as gone:
        subsystem.client.volumes()
    assert subsystem.api_url in str(gone.value)
    assert isinstance(gone.value, ConnectionError)
    assert pickle.loads(pickle.dumps(gone.value)).url == gone.value.url
    # The offline check of the crashed daemon's data directory.
    report = subsystem.check()
    assert report.returncode == 0, report.stdout + report.stderr
    subsystem.ipl()
    with pytest.raises(BootError, match="stopped daemon"):
        subsystem.check()


def test_wait_session_and_local_listing(subsystem):
    c = subsystem.client
    c.start_session("W1", "FB00:0-15", "FB01", copy_rate=150)
    done = c.wait_session("W1", timeout=120)
    assert all(p["copied_tracks"] >= p["total_tracks"] for p in done["parts"])
    assert c.complete_session("W1")["state"] == "completed"
    assert c.wait_session("W1")["state"] == "completed"
    assert c.session("W1", local=True)["state"] == "completed"
    c.start_session("W0", "FB02:0-15", "FB03", copy_rate=0)
    with pytest.raises(ApiError, match="copies at rate 0") as e:
        c.wait_session("W0")
    assert e.value.kind == "wrong_state"
    c.terminate_session("W0")
    with pytest.raises(ApiError, match="was terminated"):
        c.wait_session("W0", timeout=5)


def _two(id_):
    return f"""
id = "{id_}"
durability = "strict"

[[volumes]]
id = "V0"
model = "fb:16M"

[[volumes]]
id = "V1"
model = "fb:16M"
"""


def test_peer_with_makes_a_spanning_session_end_on_both_when_one_crashes(subsystem_factory):
    a = subsystem_factory(config=_two("SS01"))
    b = subsystem_factory(config=_two("SS02"))
    a.peer_with(b)
    b.peer_with(a)
    b.client.start_session("SPAN", ["SS01/V0:0-15", "SS02/V0:0-15"],
                           ["SS01/V1", "SS02/V1"], copy_rate=0)
    a.crash()
    a.ipl()
    s = b.client.session("SPAN")
    assert (s["state"], s["reason"]) == ("terminated", "ipl")
    # QA: with one-way peering the coordinator kept its part (map copying,
    # row initiated) and refused the next session onto its target.
    rows = [r for r in b.client.table() if r["session_id"] == "SPAN"]
    assert any(r["status"].startswith("terminated") for r in rows), rows
    assert b.client.start_session("NEXT", ["SS02/V0:0-15"], ["SS02/V1"])["state"] == "active"
