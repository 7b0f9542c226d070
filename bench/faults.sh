#!/usr/bin/env bash
# The reliability issue's three timed faults, on a 3-node `wormfs quickstart` with the
# DEFAULT configuration (election timeout 10 s, heartbeat 1 s):
#
#   bench/faults.sh [READ_MIB] [FREEZE_S] [WRITE_MIB]      (defaults: 200, 75 and 2048)
#
# 1. hung follower: a cold sequential read of a READ_MIB file with every node running,
#    then of another such file with one follower stopped (SIGSTOP); prints both rates,
#    their ratio, and the CPU time the nodes and the mount spent per GiB read in each.
# 2. returning follower: a follower stopped for FREEZE_S seconds, then resumed; every
#    node's `status --json` is polled every 0.25 s from the freeze until 20 s after the
#    resume; prints the longest time the running nodes named no master and the terms seen.
# 3. dead master: a writer copies WRITE_MIB to the mount in 1 MiB writes; 5 s in, the
#    master is killed (SIGKILL); prints the longest wait for one write, when writes resumed
#    after the kill, and whether the copy completed with the right bytes.
# Needs root (the mount, and dropping the page cache).
set -euo pipefail
cd "$(dirname "$0")/.."
READ_MIB=${1:-200}
FREEZE_S=${2:-75}
WRITE_MIB=${3:-2048}
BIN=${WORMFS_BIN:-target/release/wormfs}
[ -n "${WORMFS_BIN:-}" ] || cargo build --release -p wormfs-cli
BIN=$(realpath "$BIN")
WORK=${BENCH_DIR:-$PWD/target/bench-faults}
rm -rf "$WORK"
mkdir -p "$WORK"
BASE=$(python3 -c 'import socket
for p in range(21000, 29000, 50):
    try:
        for o in (0, 1, 2, 30, 31, 32, 60, 61, 62):
            s = socket.socket(); s.bind(("127.0.0.1", p + o)); s.close()
        print(p); break
    except OSError: pass')
QS_PID=
cleanup() {
    for p in $(pgrep -f "$WORK/node" || true); do kill -CONT "$p" 2>/dev/null || true; done
    [ -n "$QS_PID" ] && kill -INT "$QS_PID" 2>/dev/null && wait "$QS_PID" 2>/dev/null || true
    mountpoint -q "$WORK/demo/mnt" && umount -l "$WORK/demo/mnt" || true
    for p in $(pgrep -f "$WORK/demo/node" || true); do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "${SRC:-}"
}
trap cleanup EXIT
export XDG_CONFIG_HOME="$WORK/config" XDG_CACHE_HOME="$WORK/cache"
"$BIN" quickstart --dir "$WORK/demo" --nodes 3 --listen "127.0.0.1:$BASE" > "$WORK/quickstart.out" 2>&1 &
QS_PID=$!
MNT="$WORK/demo/mnt"
for _ in $(seq 1 600); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { cat "$WORK/quickstart.out"; echo "no mount" >&2; exit 1; }
pid_of() { pgrep -f "$WORK/demo/node$1/node.toml" | head -1; }
addr_of() { echo "127.0.0.1:$((BASE + $1 - 1))"; }
status() { timeout 5 "$BIN" --node "$(addr_of "$1")" status --json 2>/dev/null || true; }
field() { python3 -c "import json,sys
try: print(json.load(sys.stdin)['$1'])
except Exception: print('')"; }
M=""
for _ in $(seq 1 300); do M=$(status 1 | field master); [ -n "$M" ] && break; sleep 0.2; done
[ -n "$M" ] || { echo "no master" >&2; exit 1; }
MI=${M#node}
F=$(( MI % 3 + 1 )) # a follower
echo "master: $M; follower used: node$F; quickstart mount through node1"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
SRC=/dev/shm/wormfs-bench-faults-src
head -c "$((READ_MIB << 20))" /dev/urandom > "$SRC"
for f in a b c; do cp "$SRC" "$MNT/$f"; done # c last: what the mount's stripe cache holds
sync
cpu_s() { # CPU seconds used so far by the quickstart (the mount) and the nodes
    python3 - $QS_PID $(pgrep -f "$WORK/demo/node" || true) <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK"); total = 0
for pid in set(sys.argv[1:]):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    except OSError:
        pass
print(total / tick)
PY
}
rate() { # MiB/s of a cold read of $1
    drop_caches
    python3 -c 'import sys,time
t=time.perf_counter(); n=0
with open(sys.argv[1], "rb", buffering=0) as f:
    while True:
        b=f.read(4<<20)
        if not b: break
        n+=len(b)
print(f"{n/(1<<20)/(time.perf_counter()-t):.1f}")' "$1"
}
echo "== 1. hung follower during a ${READ_MIB} MiB read"
C0=$(cpu_s); R_OK=$(rate "$MNT/a"); C1=$(cpu_s)
kill -STOP "$(pid_of "$F")"
R_HUNG=$(rate "$MNT/b"); C2=$(cpu_s)
kill -CONT "$(pid_of "$F")"
cmp -s "$SRC" "$MNT/b" && SAME=yes || SAME=NO
python3 -c "import sys
ok, hung, f, same, c0, c1, c2, mib = sys.argv[1:]
gib = float(mib) / 1024
print(f'read {ok} MiB/s ({(float(c1)-float(c0))/gib:.2f} CPU-s a GiB), with node{f} stopped {hung} MiB/s ({(float(c2)-float(c1))/gib:.2f} CPU-s a GiB): {float(hung)/float(ok):.2f}x; bytes right: {same}')" "$R_OK" "$R_HUNG" "$F" "$SAME" "$C0" "$C1" "$C2" "$READ_MIB"

echo "== 2. follower node$F stopped for ${FREEZE_S} s, then resumed"
for _ in $(seq 1 100); do [ "$(status "$F" | field master)" = "$M" ] && break; sleep 0.2; done
python3 - "$BIN" "$BASE" "$F" "$FREEZE_S" "$(pid_of "$F")" <<'EOF'
import json, os, signal, subprocess, sys, time
bin_, base, frozen, freeze_s, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def status(i):
    try:
        out = subprocess.run([bin_, "--node", f"127.0.0.1:{base + i - 1}", "status", "--json"],
                             capture_output=True, timeout=5).stdout
        return json.loads(out)
    except Exception:
        return None
running = [i for i in (1, 2, 3) if i != frozen]
t0 = time.monotonic(); os.kill(pid, signal.SIGSTOP); resumed = None
terms, masters = set(), set(); gap = longest = 0.0; last = time.monotonic()
while True:
    now = time.monotonic()
    if resumed is None and now - t0 >= freeze_s:
        os.kill(pid, signal.SIGCONT); resumed = now; running = [1, 2, 3]
    if resumed is not None and now - resumed >= 20:
        break
    seen = [status(i) for i in running]
    named = [s["master"] for s in seen if s and s.get("master")]
    for s in seen:
        if s: terms.add(s.get("term")); s.get("master") and masters.add(s["master"])
    now = time.monotonic()
    if named: last = now
    longest = max(longest, now - last)
    time.sleep(0.25)
print(f"longest time with no master named: {longest:.2f} s; masters seen: {sorted(masters)}; terms seen: {sorted(t for t in terms if t is not None)}")
EOF

echo "== 3. master killed during a ${WRITE_MIB} MiB copy"
M=$(status "$F" | field master); MI=${M#node}
head -c "$((WRITE_MIB << 20))" /dev/urandom > "$SRC"
python3 - "$SRC" "$MNT/copy" "$(pid_of "$MI")" "$M" <<'EOF'
import os, signal, sys, threading, time
src, dst, master_pid, master = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
killed = {}
def kill():
    time.sleep(5); os.kill(master_pid, signal.SIGKILL); killed["at"] = time.monotonic()
threading.Thread(target=kill, daemon=True).start()
t0 = time.monotonic(); last = t0; longest = 0.0; resumed = None; err = None
try:
    with open(src, "rb") as s, open(dst, "wb") as d:
        while True:
            b = s.read(1 << 20)
            if not b: break
            d.write(b); d.flush()
            now = time.monotonic()
            longest = max(longest, now - last); last = now
            if "at" in killed and resumed is None and now > killed["at"]:
                resumed = now - killed["at"]
        os.fsync(d.fileno())
except OSError as e:
    err = e
took = time.monotonic() - t0
with open(src, "rb") as s, open(dst, "rb") as d:
    same = err is None and s.read() == d.read()
r = f"{resumed:.1f} s" if resumed is not None else "never"
print(f"{master} killed {5} s in; first write completed {r} after the kill; longest wait for one 1 MiB write: {longest:.1f} s; copy took {took:.1f} s; error: {err}; bytes right: {'yes' if same else 'NO'}")
EOF
