#!/usr/bin/env bash
# What the data dir's filesystem allows a strictly durable first write,
# before any firmware-sim code runs: fio alone, no daemon.
#
# A first 4 KiB write to a grain a nocopy map still needs copies the whole
# 64 KiB grain into the (sparse) target and makes it durable before the
# split bit is journaled (docs/DURABILITY.md, rule 1), so first writes per
# second can never beat the rate at which the filesystem takes random
# 64 KiB writes to fresh places of a sparse file with an fdatasync per
# group of them (the daemon's group commits hold about 8 at QD16). That
# rate is measured here for groups of 8 and 16, beside plain 4 KiB random
# writes (no flush) to a filled file, on one thread each, with the CPU time
# each write cost. Compare the grain rate with `scripts/bench-daemon`'s
# "first writes" and "no map" cells (docs/PERFORMANCE.md).
#
# Usage: benches/cow-ceiling.sh
#   PLACES="tmpfs disk"  tmpfs: /dev/shm; disk: DISK_DIR (default
#                        target/bench-data on this checkout's disk)
#   SIZE_MIB=1024 IO_MIB=512 (bytes written per grain cell)
#   FLUSH_GROUPS="8 16 64 256" (grains per fdatasync)
# Needs: fio. Run it on a quiet machine. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

PLACES=${PLACES:-"tmpfs disk"}
DISK_DIR=${DISK_DIR:-$PWD/target/bench-data}
SIZE_MIB=${SIZE_MIB:-1024}
IO_MIB=${IO_MIB:-512}
# Groups of 8 and 16: what the daemon commits at QD16, where a first write
# is answered only once its grain is durable. 64 and 256: what a server
# that answered first writes before their commit (and so formed larger
# groups) could reach; docs/PERFORMANCE.md, "Answering before the commit".
FLUSH_GROUPS=${FLUSH_GROUPS:-"8 16 64 256"}
command -v fio >/dev/null || { echo "cow-ceiling: fio is missing (run ./scripts/test once to install it)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "cow-ceiling: python3 is missing" >&2; exit 1; }

# fio args... -> "iops mib_s cpu_us_per_io" of the write direction.
fio_write() {
  fio --name=c --output-format=json "$@" 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
w = j["write"]
secs = w["runtime"] / 1000 or 1e-9
cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100 * secs
print("%.0f %.0f %.1f" % (w["iops"], w["bw"] / 1024, cpu / max(w["total_ios"], 1) * 1e6))'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
echo
echo "| place | writes | per second | MiB/s | CPU per write |"
echo "|---|---|---|---|---|"
for place in $PLACES; do
  case $place in
    tmpfs) dir=/dev/shm ;;
    disk) dir=$DISK_DIR ;;
    *) echo "cow-ceiling: unknown place $place (tmpfs or disk)" >&2; exit 2 ;;
  esac
  mkdir -p "$dir"
  f=$(mktemp "$dir/cow-ceiling.XXXXXX")
  trap 'rm -f "$f"' EXIT
  # Plain writes: a filled file, overwritten in place (what a volume no
  # map touches costs the filesystem).
  fio --name=fill --filename="$f" --rw=write --bs=1m --size="${SIZE_MIB}m" \
    --end_fsync=1 >/dev/null 2>&1
  read -r iops mib cpu < <(fio_write --filename="$f" --rw=randwrite --bs=4k \
    --size="${SIZE_MIB}m" --ioengine=psync --time_based --runtime=5 --norandommap)
  echo "| $place | 4 KiB random, filled file, no flush | $iops | $mib | $cpu us |"
  for group in $FLUSH_GROUPS; do
    rm -f "$f"
    truncate -s "${SIZE_MIB}M" "$f"
    read -r iops mib cpu < <(fio_write --filename="$f" --rw=randwrite --bs=64k \
      --size="${SIZE_MIB}m" --io_size="${IO_MIB}m" --ioengine=psync \
      --fdatasync="$group" --norandommap --randrepeat=1)
    echo "| $place | 64 KiB random into a sparse file, fdatasync per $group | $iops | $mib | $cpu us |"
  done
  rm -f "$f"
  trap - EXIT
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
