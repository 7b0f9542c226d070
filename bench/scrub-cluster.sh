#!/usr/bin/env bash
# Shallow scrub across a 3-node cluster: a stat of every chunk, most of them on other nodes
# than the master's (each such stat is a request over libp2p).
#
#   bench/scrub-cluster.sh [SIZE_MIB]      (default 512)
#
# Three release `wormfs serve` processes on loopback, two disk directories each, a policy
# of 2+1 with 8 KiB stripes (4 KiB chunks, so SIZE_MIB makes SIZE_MIB × 384 chunks: about
# 200,000 for 512 MiB), written through a mount. Then `wormfs scrub --wait` is timed, twice,
# and the reference is `stat` of every chunk file from this shell (python `os.stat`, the
# page cache warm for both). Prints chunks per second and the CPU the three nodes spent per
# 1,000 chunks.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-512}
BIN=${WORMFS_BIN:-target/release/wormfs}
[ -n "${WORMFS_BIN:-}" ] || cargo build --release -p wormfs-cli
WORK=${BENCH_DIR:-$PWD/target/bench-scrub-cluster}
rm -rf "$WORK"
mkdir -p "$WORK/mnt"
ELECTION_MS=1500
NODE_EXTRA=$(printf '%s\n' '[policies]' 'default = "tiny"' 'inline_max = "0"' \
    '[policies.named.tiny]' 'k = 2' 'm = 1' 'stripe_size = "8KiB"' \
    '[heal]' 'scrub_every = "off"' 'deep_scrub_every = "off"' 'garbage_every = "off"')
source bench/lib/cluster-up.sh
W() { "$BIN" --node "${ADDRS[0]}" "$@"; }
start_mount
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$WORK/mnt/data"
sync "$WORK/mnt/data"
stop_mount
CHUNKS=$(find "$WORK"/node?/disk? -name '*.chunk' | wc -l)
now() { date +%s.%N; }
ref=$(python3 - "$WORK" <<'PY'
import os, sys, time
paths = []
for root, _, files in os.walk(sys.argv[1]):
    paths += [os.path.join(root, f) for f in files if f.endswith(".chunk")]
t = time.perf_counter()
for p in paths: os.stat(p)
print(f"{len(paths) / (time.perf_counter() - t):.0f}")
PY
)
echo "| run | chunks | shallow scrub s | chunks/s | nodes' CPU-ms per 1000 chunks | plain stat chunks/s |"
echo "|---|---|---|---|---|---|"
for run in 1 2; do
    c0=$(cpu "${PIDS[@]}"); t0=$(now)
    W scrub --wait > "$WORK/scrub$run.out" 2>&1
    t=$(echo "$(now) - $t0" | bc -l); c=$(( $(cpu "${PIDS[@]}") - c0 ))
    grep -q 'finished' "$WORK/scrub$run.out"
    printf '| %s | %s | %.1f | %.0f | %.1f | %s |\n' "$run" "$CHUNKS" "$t" \
        "$(echo "$CHUNKS / $t" | bc -l)" "$(echo "$c * 1000 / $HZ / $CHUNKS * 1000" | bc -l)" "$ref"
done
