#!/usr/bin/env bash
# Compare the firmware-sim NBD server (crates/nbd, in-memory export) with
# nbdkit's memory plugin and qemu-nbd on a tmpfs file, in the same run, with
# fio's nbd engine over unix sockets: 4 KiB random read/write at QD16 and
# 1 MiB sequential read/write at QD16, plus an nbdcopy read of the export.
#
# Usage: benches/nbd-compare.sh   (RUNTIME=10 SIZE_MIB=1024 ROUNDS=3 QD=16 by default;
#        VERBOSE=1 also prints every run)
# Needs: fio, nbdkit, qemu-nbd, nbdcopy (scripts/test installs them).
# Prints a markdown table (IOPS / MiB/s) for docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME=${RUNTIME:-10}
SIZE_MIB=${SIZE_MIB:-1024}
QD=${QD:-16}
for t in fio nbdkit qemu-nbd nbdcopy python3; do
  command -v "$t" >/dev/null || { echo "nbd-compare: $t is missing" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p nbd --example mem-server
SIM="$CARGO_TARGET_DIR/release/examples/mem-server"

DIR=$(mktemp -d /dev/shm/nbd-compare.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$DIR"
}
trap cleanup EXIT

wait_up() { # uri
  for _ in $(seq 100); do
    nbdinfo --size "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nbd-compare: server at $1 did not come up" >&2; exit 1
}

# firmware-sim nbd (MemExport), and the same with request batching off
"$SIM" "unix:$DIR/sim.sock" "$SIZE_MIB" disk 2>"$DIR/sim.log" &
PIDS+=($!)
NBD_MAX_BATCH=1 "$SIM" "unix:$DIR/sim1.sock" "$SIZE_MIB" disk 2>"$DIR/sim1.log" &
PIDS+=($!)
# nbdkit memory plugin
nbdkit -P "$DIR/k.pid" -U "$DIR/k.sock" memory "${SIZE_MIB}M"
# qemu-nbd on a tmpfs file
truncate -s "${SIZE_MIB}M" "$DIR/q.img"
qemu-nbd -f raw -x disk -t -e 8 --cache=writeback -k "$DIR/q.sock" --fork --pid-file="$DIR/q.pid" "$DIR/q.img"

declare -A URI=(
  [firmware-sim]="nbd+unix:///disk?socket=$DIR/sim.sock"
  [firmware-sim-nobatch]="nbd+unix:///disk?socket=$DIR/sim1.sock"
  [nbdkit-memory]="nbd+unix:///?socket=$DIR/k.sock"
  [qemu-nbd-tmpfs]="nbd+unix:///disk?socket=$DIR/q.sock"
)
for s in "${!URI[@]}"; do wait_up "${URI[$s]}"; done
PIDS+=("$(cat "$DIR/k.pid")" "$(cat "$DIR/q.pid")")

fio_run() { # uri rw bs -> "iops mib_s"
  fio --name=b --ioengine=nbd --uri="$1" --rw="$2" --bs="$3" --iodepth="$QD" \
      --size="${SIZE_MIB}m" --time_based --runtime="$RUNTIME" --output-format=json 2>/dev/null |
    python3 -c '
import json, sys
t = sys.stdin.read(); j = json.loads(t[t.index("{"):])["jobs"][0]
d = j["read"] if j["read"]["io_bytes"] else j["write"]
print("%.0f %.0f" % (d["iops"], d["bw_bytes"] / 2**20))'
}

ORDER=(firmware-sim firmware-sim-nobatch nbdkit-memory qemu-nbd-tmpfs)
# Fill every export with non-zero data first, so reads move real bytes.
for s in "${ORDER[@]}"; do
  fio --name=fill --ioengine=nbd --uri="${URI[$s]}" --rw=write --bs=1m --iodepth=8 \
      --size="${SIZE_MIB}m" --buffer_pattern=0x5a --output-format=terse >/dev/null 2>&1
done

# Interleave servers within each round so load from other processes hits
# them alike; report the median of ROUNDS runs per cell.
ROUNDS=${ROUNDS:-3}
declare -A RES
CELLS=("randread 4k iops" "randwrite 4k iops" "read 1m mib" "write 1m mib")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in "${CELLS[@]}"; do
    set -- $c
    for s in "${ORDER[@]}"; do
      out=$(fio_run "${URI[$s]}" "$1" "$2")
      if [ "$3" = iops ]; then v=${out% *}; else v=${out#* }; fi
      RES["$s|$1|$2"]+="$v "
    done
  done
  for s in "${ORDER[@]}"; do
    t0=$(date +%s.%N); nbdcopy "${URI[$s]}" null:; t1=$(date +%s.%N)
    RES["$s|nbdcopy"]+="$(python3 -c "print('%.0f' % ($SIZE_MIB / ($t1 - $t0)))") "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| Server | 4 KiB randread IOPS | 4 KiB randwrite IOPS | 1 MiB seq read MiB/s | 1 MiB seq write MiB/s | nbdcopy read MiB/s |"
echo "|---|---|---|---|---|---|"
for s in "${ORDER[@]}"; do
  echo "| $s | $(median "${RES[$s|randread|4k]}") | $(median "${RES[$s|randwrite|4k]}") | $(median "${RES[$s|read|1m]}") | $(median "${RES[$s|write|1m]}") | $(median "${RES[$s|nbdcopy]}") |"
done
echo
echo "fio QD$QD, ${RUNTIME}s per run, median of $ROUNDS interleaved rounds, ${SIZE_MIB} MiB export, unix sockets, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${VERBOSE:-}" ]; then for k in "${!RES[@]}"; do echo "$k: ${RES[$k]}"; done | sort; fi
