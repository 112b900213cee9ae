"""One running firmware-sim daemon for a test: a fresh data directory, free
ports (port 0, read back from the boot banner), and clean-up on close.

The daemon is the real binary, so a crash is a real SIGKILL of the process
and an IPL is a real boot of the same data directory.
"""

import fcntl
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .client import Client

#: How long a boot may take before it counts as failed.
BOOT_TIMEOUT_S = 60.0


class BootError(RuntimeError):
    """The daemon did not come up; the message carries its output and log."""


#: Directories :class:`Subsystem` makes itself (no ``workdir``) are
#: ``$TMPDIR/firmware-sim-XXXXXXXX``.
OWN_DIR_PREFIX = "firmware-sim-"
#: The lock its Python process holds on such a directory while it lives.
KIT_LOCK = ".kit-lock"


def _hold_kit_lock(workdir):
    """Takes the directory's kit lock and keeps it (the fd) until close: the
    kernel drops it when this process dies, even by SIGKILL, and the
    directory is then stale. The lock file gets its name only once locked,
    so a sweep never sees it unlocked in between."""
    tmp = workdir / (KIT_LOCK + ".new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(tmp, workdir / KIT_LOCK)
    return fd


def _sweep_stale_dirs():
    """Removes the directories of Subsystems whose process died without
    closing them (QA: a SIGKILLed test left 79 GB of sparse volume files,
    by their apparent size, in $TMPDIR for good). A directory is stale when
    it has a kit lock nobody holds; a live process's directory always holds
    it, booted or not."""
    base = Path(tempfile.gettempdir())
    for d in base.glob(OWN_DIR_PREFIX + "*"):
        lock = d / KIT_LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # not ours, or being made, or already gone
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its process lives
        try:
            shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)


def find_binary(explicit=None):
    """``explicit``, else ``$FIRMWARE_SIM_BIN``, else ``firmware-sim`` on ``PATH``."""
    for candidate in (explicit, os.environ.get("FIRMWARE_SIM_BIN")):
        if candidate:
            if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
                raise BootError(f"firmware-sim binary {candidate!r} is not an executable file")
            return candidate
    found = shutil.which("firmware-sim")
    if not found:
        raise BootError(
            "no firmware-sim binary: put it on PATH or set FIRMWARE_SIM_BIN "
            "(cargo build --release -p firmware-sim builds target/release/firmware-sim)"
        )
    return found


class Subsystem:
    """A booted daemon. Use as a context manager, or call :meth:`close`.

    ``config`` is the TOML text of a subsystem config (docs/CLI.md), or
    ``None`` for the embedded default (CKD00..03, FB00..03, subsystem SS01).
    ``args`` are extra ``boot`` arguments (e.g. ``["--peer", "SS01=..."]``).
    ``api_ca`` is the PEM certificate (or CA) the client trusts when ``args``
    serve the API over HTTPS (``--api-tls --tls-cert FILE --tls-key FILE``).
    """

    def __init__(self, config=None, binary=None, workdir=None, args=(), api_ca=None):
        self.binary = find_binary(binary)
        self._own_dir = workdir is None
        self._kit_lock = None
        if self._own_dir:
            _sweep_stale_dirs()
            self.workdir = Path(tempfile.mkdtemp(prefix=OWN_DIR_PREFIX))
            self._kit_lock = _hold_kit_lock(self.workdir)
        else:
            self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "daemon.log"
        self.config_path = None
        if config is not None:
            self.config_path = self.workdir / "subsystem.toml"
            self.config_path.write_text(config)
        self.args = list(args)
        self.api_ca = api_ca
        self.proc = None
        self.api_url = None
        self.nbd_base = None
        self.banner = ""
        self.client = None
        self._ports = ("0", "0")
        try:
            self._boot(first=True)
        except BaseException:
            self.close()
            raise

    # ---- lifecycle ---------------------------------------------------------
    def _boot(self, first):
        api_port, nbd_port = self._ports
        cmd = [self.binary, "boot", "--data-dir", str(self.data_dir),
               "--api", f"127.0.0.1:{api_port}", "--nbd", f"127.0.0.1:{nbd_port}"]
        # The pipe on stdin closes when this process dies, even by SIGKILL:
        # the daemon then stops instead of outliving the test.
        cmd += ["--stop-on-stdin-eof"]
        # The config only at the first boot: the data directory holds it
        # afterwards, changed by the volumes the test created or deleted. The
        # boot arguments (TLS, read-only, token...) every time.
        if first and self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += self.args
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, env=env)
        log.close()
        lines = queue.Queue()

        def pump(stream):
            for raw in iter(stream.readline, b""):
                lines.put(raw.decode(errors="replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        banner = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise BootError(self._why("not ready after %.0f s" % BOOT_TIMEOUT_S, banner))
            try:
                line = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                raise BootError(self._why(f"exited with status {code} before ready", banner))
            banner.append(line)
            if line.startswith("control API: "):
                self.api_url = line.split(": ", 1)[1].strip()
            for scheme in ("nbd://", "nbds://"):  # nbds:// under --tls require
                if scheme in line and self.nbd_base is None:
                    uri = line[line.index(scheme):].split()[0]
                    self.nbd_base = uri[: uri.index("/", len(scheme)) + 1]
            if line.startswith("ready:"):
                break
        self.banner = "\n".join(banner)
        if self.api_url is None or self.nbd_base is None:
            self._kill()
            raise BootError(self._why("banner lacks the API or NBD address", banner))
        # An IPL boots on the same ports, so peers and clients keep working.
        self._ports = (self.api_url.rsplit(":", 1)[1],
                       self.nbd_base.rstrip("/").rsplit(":", 1)[1])
        self.client = Client(self.api_url, cafile=self.api_ca)

    def _why(self, what, banner):
        try:
            log = self.log_path.read_text(errors="replace")
        except OSError:
            log = ""
        return f"firmware-sim boot {what}\n--- stdout ---\n" + "\n".join(banner) + \
            f"\n--- log ({self.log_path}) ---\n{log}"

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """Clean shutdown (SIGTERM): every volume flushed. Returns the exit status."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise BootError(self._why(f"did not stop within {timeout:.0f} s of SIGTERM", []))

    def crash(self):
        """SIGKILL: no shutdown at all, like a power loss of the host process."""
        self._kill()

    def ipl(self):
        """Boot the same data directory again (an IPL): a clean stop first if
        the daemon still runs. It listens on the same API and NBD ports again,
        so peer daemons and saved URIs keep working."""
        if self.running:
            self.stop()
        self.api_url = self.nbd_base = None
        self._boot(first=False)
        return self

    def peer_with(self, other):
        """Makes ``other`` (a running :class:`Subsystem`) a peer of this one:
        adds ``--peer ID=HOST:PORT`` for it to the boot arguments and IPLs
        this daemon. Sessions spanning both need each to know the other
        (QA: with only the coordinator knowing its peer, a crash of the
        peer left the coordinator's part running): call it on both, before
        starting sessions, since the IPL ends this daemon's sessions."""
        other_id = other.client.health()["subsystem"]
        address = other.api_url.split("://", 1)[1]
        self.args += ["--peer", f"{other_id}={address}"]
        if other.api_ca is not None and "--peer-ca" not in self.args:
            self.args += ["--peer-ca", str(other.api_ca)]
        return self.ipl()

    def reset(self, lose_volatile=False):
        """A controller reset of the running subsystem, then its notification."""
        return self.client.event("reset", lose_volatile=lose_volatile)

    def close(self):
        """Stops the daemon (SIGTERM, else SIGKILL) and removes its directory."""
        try:
            if self.running:
                try:
                    self.stop(timeout=20.0)
                except BootError:
                    pass
        finally:
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            if self._kit_lock is not None:
                os.close(self._kit_lock)
                self._kit_lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- what tests use ----------------------------------------------------
    def uri(self, volume):
        """The NBD URI of ``volume`` (``nbd://127.0.0.1:PORT/VOL``)."""
        return f"{self.nbd_base}{volume}"

    def run(self, *cli_args, check=True, json=False, api=True):
        """Runs the CLI against this subsystem; returns the CompletedProcess
        (text mode). ``check`` raises on a non-zero exit; ``json`` adds --json;
        ``api=False`` leaves out ``--api`` (and ``--api-ca``), for the
        commands that take none (``check``, ``replay``...)."""
        cmd = [self.binary, *[str(a) for a in cli_args]]
        if api:
            cmd += ["--api", self.api_url]
            if self.api_ca is not None:
                cmd += ["--api-ca", str(self.api_ca)]
        if json:
            cmd.append("--json")
        return subprocess.run(cmd, capture_output=True, text=True, check=check)

    def check(self, check=True):
        """The offline metadata check of this daemon's data directory
        (``firmware-sim check``; what to run after a crash). The daemon must
        not be running: after :meth:`crash` or :meth:`stop`, before
        :meth:`ipl`. Returns the CompletedProcess (its report in ``stdout``)."""
        if self.running:
            raise BootError("check runs on a stopped daemon's data directory: "
                            "crash() or stop() it first")
        return self.run("check", "--data-dir", str(self.data_dir), check=check, api=False)

    def log(self):
        """The daemon's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
