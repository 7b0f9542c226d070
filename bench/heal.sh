#!/usr/bin/env bash
# Deep scrub and repair against plain reads and copies of the same bytes, in the same run.
#
#   bench/heal.sh [SIZE_MIB]      (default 1024; SMALL_FILES=N, default 5000)
#
# A release node over 6 disk directories with the `media` policy (4+2, 4 MiB stripes) as
# the default; SIZE_MIB written through a mount, and SMALL_FILES files of 40 KiB (six chunks
# each). Then, with the page cache dropped before each:
#   - shallow scrub: `wormfs scrub --wait` (a stat of every chunk, small files' too);
#   - plain read: `cat` of every chunk file to /dev/null;
#   - deep scrub: `wormfs scrub --deep --wait` (reads the same bytes);
#   - plain copy: `cp` of the chunk files of one disk to a scratch directory on the same
#     file system, then `sync` (the bytes a rebuild of that disk writes);
#   - repair: with repair paused, the chunk files of that disk deleted and found missing by a
#     shallow scrub; then repair resumed and timed until `wormfs repair` shows none queued
#     and no stripe degraded.
# Prints a Markdown table: MiB/s of chunk bytes read (scrub) or written (repair), the ratio
# to the plain operation, and the node's CPU seconds per GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
BIN=target/release/wormfs
cargo build --release -p wormfs-cli  # always: a stale binary would measure old code
WORK=${BENCH_DIR:-$PWD/target/bench-heal}
rm -rf "$WORK"
mkdir -p "$WORK/mnt" "$WORK/scratch"
for i in 0 1 2 3 4 5; do mkdir -p "$WORK/disk$i"; done
cat > "$WORK/node.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "meta"
[[disks]]
path = "disk0"
[[disks]]
path = "disk1"
[[disks]]
path = "disk2"
[[disks]]
path = "disk3"
[[disks]]
path = "disk4"
[[disks]]
path = "disk5"
[policies]
default = "media"
[heal]
scrub_every = "off"
deep_scrub_every = "off"
repair_every = "1s"
garbage_every = "off"
TOML

NODE_PID= ; MOUNT_PID=
cleanup() {
    [ -n "$MOUNT_PID" ] && kill -TERM "$MOUNT_PID" 2>/dev/null && wait "$MOUNT_PID" 2>/dev/null || true
    mountpoint -q "$WORK/mnt" && umount -l "$WORK/mnt" || true
    [ -n "$NODE_PID" ] && kill -TERM "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true
}
trap cleanup EXIT
wait_for_line() { # file pattern
    for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(cannot drop caches)" >&2; }
now() { date +%s.%N; }
HZ=$(getconf CLK_TCK)

RUST_LOG=warn "$BIN" serve --config "$WORK/node.toml" > "$WORK/node.out" 2> "$WORK/node.log" &
NODE_PID=$!
wait_for_line "$WORK/node.out" "listening on"
ADDR=$(sed -n 's/^wormfs-node listening on //p' "$WORK/node.out")
# the node wrote its first admin's identity into its data directory
export WORMFS_IDENTITY="$WORK/meta/admin.identity"
W() { "$BIN" --node "$ADDR" "$@"; }
RUST_LOG=warn "$BIN" --node "$ADDR" mount "$WORK/mnt" > "$WORK/mount.out" 2>> "$WORK/mount.log" &
MOUNT_PID=$!
for _ in $(seq 1 300); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$WORK/mnt/data"
sync "$WORK/mnt/data"
# many small files, for the shallow scrub: SMALL_FILES of 40 KiB, six chunks each
SMALL_FILES=${SMALL_FILES:-5000}
mkdir -p "$WORK/mnt/small"
head -c 40960 /dev/urandom > "$WORK/small.src"
for i in $(seq 1 "$SMALL_FILES"); do cp "$WORK/small.src" "$WORK/mnt/small/$i"; done
sync "$WORK/mnt/small"
kill -TERM "$MOUNT_PID"; wait "$MOUNT_PID" || true; MOUNT_PID=

ALL_CHUNKS=$(find "$WORK"/disk? -name '*.chunk' | wc -l)
ALL_BYTES=$(find "$WORK"/disk? -name '*.chunk' -printf '%s\n' | awk '{s+=$1} END {print s}')
# the big file's chunks (4 MiB stripes: 1 MiB chunks) for the byte rates
CHUNKS=$(find "$WORK"/disk? -name '*.chunk' -size +100k | wc -l)
CHUNK_BYTES=$(find "$WORK"/disk? -name '*.chunk' -size +100k -printf '%s\n' | awk '{s+=$1} END {print s}')
DISK5_BYTES=$(find "$WORK/disk5" -name '*.chunk' -size +100k -printf '%s\n' | awk '{s+=$1} END {print s}')

# plain read of every chunk file
drop_caches
t0=$(now)
find "$WORK"/disk? -name '*.chunk' -print0 | xargs -0 cat > /dev/null
plain_read=$(echo "$(now) - $t0" | bc -l)

# deep scrub
drop_caches
c0=$(cpu "$NODE_PID"); t0=$(now)
W scrub --deep --wait > "$WORK/scrub.out"
scrub=$(echo "$(now) - $t0" | bc -l); scrub_cpu=$(( $(cpu "$NODE_PID") - c0 ))
grep -q 'finished' "$WORK/scrub.out"

# shallow scrub (a stat of every chunk)
drop_caches
c0=$(cpu "$NODE_PID"); t0=$(now)
W scrub --wait > /dev/null
shallow=$(echo "$(now) - $t0" | bc -l); shallow_cpu=$(( $(cpu "$NODE_PID") - c0 ))

# plain copy of one disk's chunk files
drop_caches
t0=$(now)
find "$WORK/disk5" -name '*.chunk' -size +100k -print0 | xargs -0 cp -t "$WORK/scratch/"
sync
plain_copy=$(echo "$(now) - $t0" | bc -l)
rm -rf "$WORK/scratch"

# repair of that disk's chunks
W repair pause > /dev/null
find "$WORK/disk5" -name '*.chunk' -size +100k -delete
W scrub --wait > /dev/null # finds them missing; repair waits
drop_caches
# PERF_REPAIR=1: a CPU profile of the node during the repair, in $WORK/repair.perf
PERF_PID=
if [ -n "${PERF_REPAIR:-}" ]; then
    perf record -q -F 499 -g -p "$NODE_PID" -o "$WORK/repair.perf" 2>/dev/null &
    PERF_PID=$!
fi
c0=$(cpu "$NODE_PID"); t0=$(now)
W repair resume > /dev/null
for _ in $(seq 1 6000); do
    out=$(W repair --json)
    q=$(echo "$out" | sed -n 's/.*"queued": \([0-9]*\).*/\1/p')
    d=$(echo "$out" | sed -n 's/.*"degraded": \([0-9]*\).*/\1/p')
    r=$(echo "$out" | sed -n 's/.*"repaired": \([0-9]*\).*/\1/p')
    [ "$q" = 0 ] && [ "$d" = 0 ] && [ "${r:-0}" -gt 0 ] && break
    sleep 0.2
done
repair=$(echo "$(now) - $t0" | bc -l); repair_cpu=$(( $(cpu "$NODE_PID") - c0 ))
if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
REBUILT=$(find "$WORK/disk5" -name '*.chunk' -size +100k | wc -l)

mib() { echo "$1 / 1048576 / $2" | bc -l; }
gib() { echo "$1 / 1073741824" | bc -l; }
printf '%s MiB file and %s files of 40 KiB, 4+2: %s chunk files (%s MiB), %s of the big file; disk5: %s MiB of it, %s chunk files rebuilt\n\n' \
    "$SIZE_MIB" "$SMALL_FILES" "$ALL_CHUNKS" "$((ALL_BYTES >> 20))" "$CHUNKS" "$((DISK5_BYTES >> 20))" "$REBUILT"
echo "| operation | time | MiB/s | × plain | node CPU-s per GiB |"
echo "|---|---|---|---|---|"
printf '| plain read (cat of every chunk file) | %.2f s | %.0f | 1.00 | — |\n' "$plain_read" "$(mib "$ALL_BYTES" "$plain_read")"
printf '| deep scrub (reads every chunk, recodes parity) | %.2f s | %.0f | %.2f | %.2f |\n' \
    "$scrub" "$(mib "$ALL_BYTES" "$scrub")" "$(echo "$plain_read / $scrub" | bc -l)" \
    "$(echo "$scrub_cpu / $HZ / $(gib "$ALL_BYTES")" | bc -l)"
printf '| shallow scrub (a stat of each of the %s chunks) | %.2f s | %.0f chunks/s | — | %.1f CPU-ms per 1000 chunks |\n' \
    "$ALL_CHUNKS" "$shallow" "$(echo "$ALL_CHUNKS / $shallow" | bc -l)" "$(echo "$shallow_cpu * 1000 / $HZ / $ALL_CHUNKS * 1000" | bc -l)"
printf '| plain copy (cp of one disk'"'"'s chunk files + sync) | %.2f s | %.0f | 1.00 | — |\n' "$plain_copy" "$(mib "$DISK5_BYTES" "$plain_copy")"
printf '| repair (one disk'"'"'s chunks of the big file rebuilt) | %.2f s | %.0f | %.2f | %.2f |\n' \
    "$repair" "$(mib "$DISK5_BYTES" "$repair")" "$(echo "$plain_copy / $repair" | bc -l)" \
    "$(echo "$repair_cpu / $HZ / $(gib "$DISK5_BYTES")" | bc -l)"
