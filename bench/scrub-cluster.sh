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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=( "$(free_port)" "$(free_port)" "$(free_port)" )
PIDS=() ; ADDRS=() ; MOUNT_PID=
cleanup() {
    [ -n "$MOUNT_PID" ] && kill -TERM "$MOUNT_PID" 2>/dev/null && wait "$MOUNT_PID" 2>/dev/null || true
    mountpoint -q "$WORK/mnt" && umount -l "$WORK/mnt" || true
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
for i in 0 1 2; do
    n=node$((i + 1)); d="$WORK/$n"; mkdir -p "$d/disk0" "$d/disk1"
    {
        echo "node_id = \"$n\""; echo 'listen = "127.0.0.1:0"'; echo 'data_dir = "meta"'
        echo "[[disks]]"; echo "id = \"$n-d0\""; echo 'path = "disk0"'
        echo "[[disks]]"; echo "id = \"$n-d1\""; echo 'path = "disk1"'
        echo '[policies]'; echo 'default = "tiny"'; echo 'inline_max = "0"'
        echo '[policies.named.tiny]'; echo 'k = 2'; echo 'm = 1'; echo 'stripe_size = "8KiB"'
        echo '[heal]'; echo 'scrub_every = "off"'; echo 'deep_scrub_every = "off"'; echo 'garbage_every = "off"'
        echo "[cluster]"; echo "listen = \"127.0.0.1:${P[$i]}\""
        [ "$i" = 0 ] && echo "bootstrap = true"
        echo "heartbeat_ms = 200"; echo "offline_after = 10"; echo "election_timeout_ms = 1500"
        for j in 0 1 2; do [ "$j" != "$i" ] && printf '[[cluster.peers]]\naddr = "127.0.0.1:%s"\n' "${P[$j]}"; done
    } > "$d/node.toml"
    RUST_LOG=warn "$BIN" serve --config "$d/node.toml" > "$d/node.out" 2> "$d/node.log" &
    PIDS+=($!)
done
for i in 0 1 2; do
    f="$WORK/node$((i + 1))/node.out"
    for _ in $(seq 1 300); do grep -q "listening on" "$f" 2>/dev/null && break; sleep 0.1; done
    ADDRS+=("$(sed -n 's/^wormfs-node listening on //p' "$f")")
done
export WORMFS_IDENTITY="$WORK/node1/meta/admin.identity"
W() { "$BIN" --node "${ADDRS[0]}" "$@"; }
for _ in $(seq 1 300); do W status > /dev/null 2>&1 && [ -n "$(W status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["master"])')" ] && break; sleep 0.2; done
sleep 1 # a few heartbeats, so every node's disks are known
RUST_LOG=warn "$BIN" --node "${ADDRS[0]}" mount "$WORK/mnt" > /dev/null 2>> "$WORK/mount.log" &
MOUNT_PID=$!
for _ in $(seq 1 300); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$WORK/mnt/data"
sync "$WORK/mnt/data"
kill -TERM "$MOUNT_PID"; wait "$MOUNT_PID" || true; MOUNT_PID=
CHUNKS=$(find "$WORK"/node?/disk? -name '*.chunk' | wc -l)
HZ=$(getconf CLK_TCK)
cpu() { local t=0; for p in "${PIDS[@]}"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done; echo "$t"; }
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
    c0=$(cpu); t0=$(now)
    W scrub --wait > "$WORK/scrub$run.out" 2>&1
    t=$(echo "$(now) - $t0" | bc -l); c=$(( $(cpu) - c0 ))
    grep -q 'finished' "$WORK/scrub$run.out"
    printf '| %s | %s | %.1f | %.0f | %.1f | %s |\n' "$run" "$CHUNKS" "$t" \
        "$(echo "$CHUNKS / $t" | bc -l)" "$(echo "$c * 1000 / $HZ / $CHUNKS * 1000" | bc -l)" "$ref"
done
