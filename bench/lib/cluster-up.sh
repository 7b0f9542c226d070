# Sourced by bench scripts: starts three release `wormfs serve` processes on loopback (two
# disk directories each) under $WORK, waits for a master, and defines the helpers below.
# Needs BIN, WORK and ELECTION_MS set, and the caller's `set -euo pipefail`; NODE_EXTRA, if
# set, is TOML put in every node's config before its [cluster] table.
#
# Sets: PIDS (node pids), ADDRS (their client addresses), M (the master's node id), MI (its
# index), VIA (the index of a follower the mount goes through), MOUNT_PID, WORMFS_IDENTITY.
# Defines: master ADDR, start_mount, stop_mount, drop_caches, seconds CMD..., cpu PID...
# (CPU ticks of those processes), cleanup (installed as the EXIT trap).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=( "$(free_port)" "$(free_port)" "$(free_port)" )
ADMIN=( "$(free_port)" "$(free_port)" "$(free_port)" )  # each node's /metrics
PIDS=() ; ADDRS=() ; MOUNT_PID=
cleanup() {
    [ -n "$MOUNT_PID" ] && kill -TERM "$MOUNT_PID" 2>/dev/null && wait "$MOUNT_PID" 2>/dev/null || true
    mountpoint -q "$WORK/mnt" && umount -l "$WORK/mnt" || true
    disown -a 2> /dev/null || true  # no "Killed" line for each node
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "${SRC:-}"
}
trap cleanup EXIT
for i in 0 1 2; do
    n=node$((i + 1)); d="$WORK/$n"; mkdir -p "$d/disk0" "$d/disk1"
    {
        echo "node_id = \"$n\""; echo 'listen = "127.0.0.1:0"'; echo 'data_dir = "meta"'
        echo "admin_listen = \"127.0.0.1:${ADMIN[$i]}\""
        echo "[[disks]]"; echo "id = \"$n-d0\""; echo 'path = "disk0"'
        echo "[[disks]]"; echo "id = \"$n-d1\""; echo 'path = "disk1"'
        [ -z "${NODE_EXTRA:-}" ] || printf '%s\n' "$NODE_EXTRA"
        echo "[cluster]"; echo "listen = \"127.0.0.1:${P[$i]}\""
        [ "$i" = 0 ] && echo "bootstrap = true"
        echo "heartbeat_ms = 200"; echo "offline_after = 10"; echo "election_timeout_ms = $ELECTION_MS"
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
# the bootstrap node writes the first admin's identity into its data directory
export WORMFS_IDENTITY="$WORK/node1/meta/admin.identity"
master() { "$BIN" --node "$1" status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["master"])' 2>/dev/null || true; }
M=""
for _ in $(seq 1 300); do M=$(master "${ADDRS[0]}"); [ -n "$M" ] && break; sleep 0.1; done
[ -n "$M" ] || { echo "no master" >&2; exit 1; }
MI=$(( ${M#node} - 1 )); VIA=$(( (MI + 1) % 3 ))
# MOUNT_VIA=master: the mount goes through the master instead (no forwarding of its writes)
[ "${MOUNT_VIA:-follower}" = master ] && VIA=$MI
sleep 1 # a few heartbeats, so every node's disks are known
start_mount() {
    RUST_LOG=${MOUNT_LOG:-warn} "$BIN" --node "${ADDRS[$VIA]}" mount "$WORK/mnt" > /dev/null 2>> "$WORK/mount.log" &
    MOUNT_PID=$!
    for _ in $(seq 1 300); do mountpoint -q "$WORK/mnt" && return 0; sleep 0.1; done
    echo "mount did not appear" >&2; exit 1
}
stop_mount() { kill -TERM "$MOUNT_PID"; wait "$MOUNT_PID" || true; MOUNT_PID=; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(cannot drop caches)" >&2; }
seconds() { python3 -c 'import sys,time,subprocess; t=time.perf_counter(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(f"{time.perf_counter()-t:.3f}")' "$@"; }
HZ=$(getconf CLK_TCK)
cpu() { local t=0; for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done; echo "$t"; }
