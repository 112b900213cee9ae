#!/usr/bin/env python3
"""Would data journaling make strictly durable first writes faster here?

A model of the two ways to make a copied 64 KiB grain durable before its
split bit, with files and fdatasync only (no firmware-sim code), run on a
directory of the filesystem in question:

- flush (what the controller does): per group of GROUP grains, write each
  to a fresh place of a sparse 1 GiB target, fdatasync the target, then
  write a small journal record and fdatasync the journal;
- data journal: per group, write each grain to the target (not flushed)
  and COPIES times into a journal file whose blocks were written before
  (an overwrite, as the controller's journal area is after its first
  pass), fdatasync the journal only; the target is flushed once every
  CHECKPOINT grains (the checkpoint that retires the journal).

Both run one group after another on one thread (the daemon pipelines the
two flushes of the first way, so it does somewhat better than its model).
Prints grains per second of each.

Usage: benches/data-journal-model.py DIR [GRAINS=4000] [GROUP=8]
Run it on a quiet machine.
"""

import os
import random
import sys
import time

GRAIN = 64 << 10
TARGET_BYTES = 1 << 30


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    grains = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    group = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    data = os.urandom(GRAIN)
    log_path = os.path.join(d, "dj-model.log")
    tgt_path = os.path.join(d, "dj-model.target")
    log_grains = 1600
    log = os.open(log_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for i in range(2 * log_grains):
            os.pwrite(log, data, i * GRAIN)
        os.fsync(log)

        def fresh_target() -> int:
            if os.path.exists(tgt_path):
                os.unlink(tgt_path)
            fd = os.open(tgt_path, os.O_RDWR | os.O_CREAT, 0o600)
            os.ftruncate(fd, TARGET_BYTES)
            return fd

        def places() -> list:
            return random.sample(range(TARGET_BYTES // GRAIN), grains)

        def flush_way() -> float:
            t, at = fresh_target(), places()
            start = time.perf_counter()
            for b in range(grains // group):
                for k in range(group):
                    os.pwrite(t, data, at[b * group + k] * GRAIN)
                os.fdatasync(t)
                os.pwrite(log, data[:512], b * 4096)
                os.fdatasync(log)
            secs = time.perf_counter() - start
            os.close(t)
            return grains / secs

        def journal_way(copies: int, checkpoint: int) -> float:
            t, at = fresh_target(), places()
            start = time.perf_counter()
            slot = 0
            for b in range(grains // group):
                for k in range(group):
                    os.pwrite(t, data, at[b * group + k] * GRAIN)
                for c in range(copies):
                    for k in range(group):
                        os.pwrite(log, data, (c * log_grains + (slot + k) % log_grains) * GRAIN)
                slot += group
                os.fdatasync(log)
                if (b + 1) * group % checkpoint < group:
                    os.fdatasync(t)
            os.fdatasync(t)
            secs = time.perf_counter() - start
            os.close(t)
            return grains / secs

        print(f"{grains} grains of 64 KiB in groups of {group}, in {d}")
        print("| way | grains/s |")
        print("|---|---|")
        rows = [
            ("flush target, then journal record", flush_way),
            ("data journal, 2 record copies, checkpoint per 1000", lambda: journal_way(2, 1000)),
            ("data journal, 1 record copy, checkpoint per 1000", lambda: journal_way(1, 1000)),
            ("flush target, then journal record (again)", flush_way),
        ]
        for name, way in rows:
            print(f"| {name} | {way():.0f} |")
    finally:
        os.close(log)
        for p in (log_path, tgt_path):
            if os.path.exists(p):
                os.unlink(p)


if __name__ == "__main__":
    main()
