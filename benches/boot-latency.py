#!/usr/bin/env python3
"""Boot and stop latency of the daemon as a test kit uses it.

Each round boots `firmware-sim boot` on a fresh data dir with ports 0 (as
the Rust and Python test kits do), times until its banner's `ready:` line,
then sends SIGTERM and times until the process has exited (clean shutdown:
every volume flushed). Prints p50/p90/p99 of both over ROUNDS rounds.

Usage: benches/boot-latency.py [BINARY] [ROUNDS]   (defaults:
target/release/firmware-sim, 100). Run it on a quiet machine.
"""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/firmware-sim"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    boots, stops = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            p = subprocess.Popen(
                [binary, "boot", "--data-dir", os.path.join(tmp, "d"),
                 "--nbd", "127.0.0.1:0", "--api", "127.0.0.1:0",
                 "--nbd-unix", os.path.join(tmp, "nbd.sock")],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for line in p.stdout:
                if line.startswith("ready:"):
                    break
            else:
                sys.exit(f"{binary} exited before ready (rc {p.wait()})")
            t1 = time.perf_counter()
            p.send_signal(signal.SIGTERM)
            p.stdout.read()
            rc = p.wait()
            t2 = time.perf_counter()
            if rc != 0:
                sys.exit(f"{binary} stopped with rc {rc}")
            boots.append((t1 - t0) * 1000)
            stops.append((t2 - t1) * 1000)
    load = os.getloadavg()
    print(f"{rounds} boots of {binary} (embedded default: 8 volumes, fresh data dir, ports 0),"
          f" load average after {load[0]:.2f}")
    print("| phase | p50 | p90 | p99 | max |")
    print("|---|---|---|---|---|")
    for name, v in (("boot to ready", boots), ("SIGTERM to exit", stops)):
        print(f"| {name} | {pct(v, 50):.0f} ms | {pct(v, 90):.0f} ms | {pct(v, 99):.0f} ms"
              f" | {max(v):.0f} ms |")
    print(f"(mean boot {statistics.mean(boots):.0f} ms, mean stop {statistics.mean(stops):.0f} ms)")


if __name__ == "__main__":
    main()
