#!/usr/bin/env bash
# A bounded soak (not run in CI): writers, readers and a checker on a 3-node
# `wormfs quickstart` while nodes are killed, frozen and restarted at random.
#
#   tests/soak.sh [MINUTES]                                          (default 20)
#
# Environment: SOAK_SEED (default 1) seeds the faults (bash's RANDOM) and the workload, so
# a run can be replayed (the faults and the data, not the timing); SOAK_WORKERS (default 2)
# workers; SOAK_MAX_FILES (default 300) files a worker keeps before it deletes more than it
# creates; SOAK_DIR (default target/soak) the work directory, emptied first; WORMFS_BIN
# (default target/release/wormfs, built first).
#
# For MINUTES:
# - each worker (tests/soak.py) owns a directory of the mount and does one operation at a
#   time: create (1 KiB-8 MiB of random bytes), read, patch, append, overwrite, rename,
#   delete, list. Only a change whose calls all succeeded, fsync and close included, enters
#   its ledger of acknowledged files (name, size, sha256). Every read is compared with the
#   ledger; a wrong or missing file is a wrong read. An error during a fault window (from
#   the fault to 10 s after the cluster is whole and caught up again) counts as "refused"
#   (a change) or "unavailable" (a read), not as a loss; one outside any fault window is
#   reported.
# - every 20-60 s, one node (never two at once) is killed (SIGKILL) and restarted 2-30 s
#   later with its own command line and log, or stopped (SIGSTOP) for 5-80 s and resumed;
#   one fault in four is a "long kill", 60-180 s down, long enough for the node to need the
#   master's snapshot. The next fault waits until every node names the same master, the
#   master sees all three online and every node has applied what the master had then (a
#   node stuck behind is reported). Faults are logged with the time in WORK/faults.log.
# Then the faults stop, every node must be up and caught up, and every ledger file is read
# back through the quickstart's mount and through a second mount via node2 (no local chunk
# reads).
# Prints operations, bytes, faults, refused writes, unavailable reads and files lost.
# Exit status: 0 nothing lost; 1 a file lost or a wrong read; 2 the run broke (no mount,
# a worker hung, the cluster did not come back, the final check could not run).
# Needs root (the mounts). Logs: WORK/faults.log, WORK/state/wN.log (the workers' errors),
# WORK/demo/nodeN/node.log, WORK/quickstart.out (the mount's), WORK/mount2.log.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-20}
SEED=${SOAK_SEED:-1}
WORKERS=${SOAK_WORKERS:-2}
MAX_FILES=${SOAK_MAX_FILES:-300}
BIN=${WORMFS_BIN:-target/release/wormfs}
[ -n "${WORMFS_BIN:-}" ] || cargo build --release -p wormfs-cli
BIN=$(realpath "$BIN")
HELPER=$PWD/tests/soak.py
WORK=$(realpath -m "${SOAK_DIR:-$PWD/target/soak}")
mountpoint -q "$WORK/demo/mnt" && { echo "$WORK/demo/mnt is mounted: another soak?" >&2; exit 2; }
rm -rf "$WORK"
mkdir -p "$WORK/state"
RANDOM=$SEED
BASE=$(python3 -c 'import socket
for p in range(21000, 29000, 50):
    try:
        for o in (0, 1, 2, 30, 31, 32, 60, 61, 62):
            s = socket.socket(); s.bind(("127.0.0.1", p + o)); s.close()
        print(p); break
    except OSError: pass')
MNT="$WORK/demo/mnt"
MNT2="$WORK/mnt2"
QS_PID=
MOUNT2_PID=
WORKER_PIDS=()

log() { echo "$(date +%T) $*" | tee -a "$WORK/faults.log"; }
node_pids() { pgrep -f "$WORK/demo/node" || true; }
pid_of() { pgrep -f "$WORK/demo/node$1/node.toml" | head -1; }
addr_of() { echo "127.0.0.1:$((BASE + $1 - 1))"; }
# the nodes the quickstart's mount has connections to (gRPC ports)
mount_via() {
    ss -Htnp state established 2>/dev/null | awk -v pid="pid=$QS_PID," -v base="$BASE" '
        index($0, pid) { n = split($4, a, ":"); i = a[n] - base; if (i >= 0 && i < 3) print "node" i + 1 }' |
        sort -u | paste -sd, -
}
fuse_conn() { mountpoint -d "$1" 2>/dev/null | cut -d: -f2; }
# `wormfs status --json` of node $1 itself: no node cache, so no failover to another node
status() {
    WORMFS_NODE_CACHE=/dev/null/none timeout 5 "$BIN" --node "$(addr_of "$1")" status --json 2>/dev/null || true
}
# "ok" when every node answers, names the same master, and the master sees 3 nodes online;
# else what is wrong
cluster_state() {
    python3 - "$(status 1)" "$(status 2)" "$(status 3)" <<'EOF'
import json, sys
seen = {}
for i, text in enumerate(sys.argv[1:], 1):
    try:
        seen[f"node{i}"] = json.loads(text)
    except ValueError:
        print(f"node{i} does not answer"); sys.exit()
masters = {s["master"] for s in seen.values()}
if len(masters) != 1 or "" in masters:
    print("masters named: " + ", ".join(f"{n}: {s['master'] or '-'}" for n, s in seen.items())); sys.exit()
m = seen[masters.pop()]
down = [n["id"] for n in m["nodes"] if n["state"] != "online"]
print(f"the master sees {', '.join(down)} not online" if down else "ok")
EOF
}
applied() { # last_applied of node $1, or -1 when it does not answer
    status "$1" | python3 -c "import json,sys
try: print(json.load(sys.stdin)['last_applied'])
except Exception: print(-1)"
}
# waits up to $1 s for every node to have applied what the master had applied at the start
wait_caught_up() {
    local t0=$SECONDS m i a behind target
    m=$(master); target=$(applied "${m#node}")
    while true; do
        behind=""
        for i in 1 2 3; do
            a=$(applied "$i"); [ "$a" -ge "$target" ] || behind="$behind node$i at $a"
        done
        [ -z "$behind" ] && { echo "every node applied the master's $target after $((SECONDS - t0)) s"; return 0; }
        [ $((SECONDS - t0)) -lt "$1" ] || break
        sleep 1
    done
    echo "NOT caught up after $1 s: the master $m applied $target;$behind"
    return 1
}
master() { # the master named by any node that answers
    local i m
    for i in 1 2 3; do
        m=$(status "$i" | python3 -c "import json,sys
try: print(json.load(sys.stdin)['master'])
except Exception: print('')")
        [ -n "$m" ] && { echo "$m"; return; }
    done
    echo "?"
}
# waits up to $1 s for cluster_state to be ok; prints how long it took or the last state
wait_whole() {
    local t0=$SECONDS s=""
    while [ $((SECONDS - t0)) -lt "$1" ]; do
        s=$(cluster_state)
        [ "$s" = ok ] && { echo "whole after $((SECONDS - t0)) s"; return 0; }
        sleep 1
    done
    echo "NOT whole after $1 s: $s"
    return 1
}
# starts node $1 again as quickstart did: `wormfs serve --config`, stderr to its log
restart_node() {
    local dir="$WORK/demo/node$1"
    echo "=== soak: restarted at $(date +%T)" >> "$dir/node.log"
    "$BIN" serve --config "$dir/node.toml" >> "$dir/stdout.log" 2>> "$dir/node.log" &
    disown "$!" # no "Killed" line from bash when a fault kills it
}
stop_pid() { # SIGTERM (or $2), then SIGKILL after 30 s
    local i
    kill "-${2:-TERM}" "$1" 2>/dev/null || return 0
    for i in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    local p c c1 c2 m
    set +e
    c1=$(fuse_conn "$MNT"); c2=$(fuse_conn "$MNT2")
    for p in $(node_pids); do kill -CONT "$p" 2>/dev/null; done
    touch "$WORK/state/stop"
    for p in "${WORKER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$MOUNT2_PID" ] && { umount "$MNT2" 2>/dev/null; stop_pid "$MOUNT2_PID"; }
    [ -n "$QS_PID" ] && stop_pid "$QS_PID" INT
    for p in $(node_pids); do stop_pid "$p"; done # the nodes this script restarted
    for m in "$MNT2" "$MNT"; do mountpoint -q "$m" && umount -l "$m"; done
    # a worker still stuck in a call to a dead mount: abort the mount's FUSE connection
    for p in "${WORKER_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || continue
        for c in $c1 $c2; do [ -e "/sys/fs/fuse/connections/$c/abort" ] && echo 1 > "/sys/fs/fuse/connections/$c/abort"; done
        kill -KILL "$p" 2>/dev/null
    done
}
trap cleanup EXIT
# The nodes inherit this: the kernel sends SIGHUP to a process group left without its parent
# (say, the shell that started this script in the background exited) while one of its
# processes is stopped, which would end every node at the next SIGSTOP fault.
trap '' HUP

# --- the cluster
export XDG_CONFIG_HOME="$WORK/config" XDG_CACHE_HOME="$WORK/cache"
"$BIN" quickstart --dir "$WORK/demo" --nodes 3 --listen "127.0.0.1:$BASE" > "$WORK/quickstart.out" 2>&1 &
QS_PID=$!
for _ in $(seq 1 600); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { cat "$WORK/quickstart.out"; echo "no mount" >&2; exit 2; }
log "soak: $MINUTES min, seed $SEED, $WORKERS workers, $BIN, work dir $WORK, master $(master)"

# --- the workers
for w in $(seq 0 $((WORKERS - 1))); do
    python3 "$HELPER" work "$MNT" "$WORK/state" "$w" "$SEED" "$MAX_FILES" 2> "$WORK/state/w$w.stderr" &
    WORKER_PIDS+=($!)
done

# --- the faults, one at a time
echo 0 > "$WORK/state/fault-until"
fault_on() { echo 9999999999 > "$WORK/state/fault-until"; }
fault_off() { echo $(($(date +%s) + 10)) > "$WORK/state/fault-until"; } # 10 s of grace
END=$((SECONDS + MINUTES * 60))
declare -A FAULTS=()
NOT_WHOLE=0
NOT_CAUGHT_UP=0
while true; do
    gap=$((20 + RANDOM % 41)); node=$((1 + RANDOM % 3)); kind=$((RANDOM % 2))
    down=$((2 + RANDOM % 29)); frozen=$((5 + RANDOM % 76)); long=$((60 + RANDOM % 121))
    # one fault in four is a long kill: down long enough to need the master's snapshot
    [ $((RANDOM % 4)) -ne 0 ] || { kind=2; down=$long; }
    [ $((SECONDS + gap)) -lt "$END" ] || break
    sleep "$gap"
    alive=0
    for p in "${WORKER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    [ "$alive" -eq "$WORKERS" ] || { log "a worker exited early: see $WORK/state/w*.stderr"; break; }
    m=$(master)
    role=follower; [ "$m" = "node$node" ] && role=master
    via=$(mount_via)
    pid=$(pid_of "$node")
    [ -n "$pid" ] || { log "node$node is not running!"; NOT_WHOLE=$((NOT_WHOLE + 1)); restart_node "$node"; continue; }
    fault_on
    if [ "$kind" -ne 1 ]; then
        log "fault: kill node$node ($role, pid $pid; mount connected to ${via:-none}), restart in $down s"
        kill -KILL "$pid"
        sleep "$down"
        restart_node "$node"
        k="kill"; [ "$kind" -eq 2 ] && k="long-kill"
        FAULTS[$k-$role]=$((${FAULTS[$k-$role]:-0} + 1))
        log "restarted node$node (pid $!)"
    else
        log "fault: stop node$node ($role, pid $pid; mount connected to ${via:-none}) for $frozen s"
        kill -STOP "$pid"
        sleep "$frozen"
        kill -CONT "$pid"
        FAULTS[stop-$role]=$((${FAULTS[stop-$role]:-0} + 1))
        log "resumed node$node"
    fi
    w=$(wait_whole 120) || NOT_WHOLE=$((NOT_WHOLE + 1))
    log "cluster $w; master $(master)"
    w=$(wait_caught_up 120) || NOT_CAUGHT_UP=$((NOT_CAUGHT_UP + 1))
    log "$w"
    fault_off
done
log "faults stopped; stopping the workers"

# --- the end: workers stop, the cluster must be whole, every acknowledged file read back
BROKE=()
[ "$NOT_WHOLE" -eq 0 ] || BROKE+=("the cluster was not whole 120 s after $NOT_WHOLE faults")
[ "$NOT_CAUGHT_UP" -eq 0 ] || BROKE+=("a node had not caught up 120 s after $NOT_CAUGHT_UP faults")
touch "$WORK/state/stop"
for p in "${WORKER_PIDS[@]}"; do
    for _ in $(seq 1 1800); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
        BROKE+=("a worker (pid $p) hangs 180 s after the faults stopped: $(cat "$WORK"/state/w*.current 2>/dev/null | tr '\n' ';')")
    elif ! wait "$p"; then
        BROKE+=("a worker (pid $p) failed: $(tail -3 "$WORK"/state/w*.stderr | tr '\n' ' ')")
    fi
done
for i in 1 2 3; do [ -n "$(pid_of "$i")" ] || { log "node$i is not running: restarting it"; restart_node "$i"; }; done
w=$(wait_whole 120) || BROKE+=("cluster $w")
log "final: cluster $w; master $(master)"
w=$(wait_caught_up 120) || BROKE+=("$w")
log "final: $w"
CHECKS=()
check() { # $1 mount, $2 label, $3 output file: prints lost files, appends the summary to CHECKS
    local out
    timeout 900 python3 "$HELPER" check "$1" "$WORK/state" "$2" 600 2>&1 | tee "$3" | { grep -v '^{' || true; } ||
        BROKE+=("the check through the $2 did not finish")
    { grep -v '^{' "$3" || true; } >> "$WORK/faults.log"
    out=$(grep '^{' "$3" | tail -1 || true)
    if [ -z "$out" ]; then
        BROKE+=("the check through the $2 printed no summary")
    else
        CHECKS+=("$out")
        case "$out" in *'"unchecked": 0,'*) ;; *) BROKE+=("the check through the $2 ran out of time") ;; esac
    fi
}
check "$MNT" "mount via node1" "$WORK/check1.out"
mkdir -p "$MNT2"
"$BIN" --node "$(addr_of 2)" mount --no-local-reads "$MNT2" > "$WORK/mount2.log" 2>&1 &
MOUNT2_PID=$!
for _ in $(seq 1 300); do mountpoint -q "$MNT2" && break; sleep 0.1; done
if mountpoint -q "$MNT2"; then
    check "$MNT2" "mount via node2" "$WORK/check2.out"
    if umount "$MNT2"; then
        wait "$MOUNT2_PID" || true
        MOUNT2_PID=
    fi
else
    BROKE+=("the second mount did not come up: $(tail -3 "$WORK/mount2.log" | tr '\n' ' ')")
fi

# --- the summary
python3 - "$MINUTES" "$SEED" "$WORK" "$NOT_WHOLE" "$NOT_CAUGHT_UP" "$(declare -p FAULTS)" "${CHECKS[@]}" <<'EOF'
import glob, json, re, sys
minutes, seed, work, not_whole, not_caught_up, faults_decl = sys.argv[1:7]
checks = [json.loads(c) for c in sys.argv[7:] if c.strip()]
faults = dict(re.findall(r'\[([\w-]+)\]="?(\d+)', faults_decl))
tot = {"ok": {}, "refused": {}}
num = {}
for f in sorted(glob.glob(f"{work}/state/w*.stats.json")):
    s = json.load(open(f))
    for k in ("ok", "refused"):
        for op, n in s[k].items():
            tot[k][op] = tot[k].get(op, 0) + n
    for k, v in s.items():
        if isinstance(v, (int, float)) and k != "longest_op_s":
            num[k] = num.get(k, 0) + v
    if s["longest_op_s"] > num.get("longest_op_s", 0):
        num["longest_op_s"], num["longest_op"] = s["longest_op_s"], s["longest_op"]
fmt = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"
print("== soak summary")
print(f"minutes {minutes}, seed {seed}")
print(f"operations done: {sum(tot['ok'].values())} ({fmt(tot['ok'])})")
print(f"bytes written: {num.get('bytes_written', 0) / 2**20:.1f} MiB, read: {num.get('bytes_read', 0) / 2**20:.1f} MiB")
print(f"faults injected: {sum(int(v) for v in faults.values())} ({fmt(faults)}); after which the cluster was not whole within 120 s: {not_whole}, a node had not caught up within 120 s: {not_caught_up}")
print(f"writes refused during faults: {sum(tot['refused'].values())} ({fmt(tot['refused'])}); files of unknown content after one: {num.get('unknown_after_failure', 0)}")
print(f"reads unavailable during faults: {num.get('unavailable', 0)}")
print(f"errors outside faults: {num.get('errors_outside_faults', 0)}; longest operation: {num.get('longest_op_s', 0)} s ({num.get('longest_op', '')})")
print(f"wrong reads during the run: {num.get('wrong_reads', 0)}")
bad = [f"  {f.split('/')[-1][:-4]}: {l.rstrip()}" for f in sorted(glob.glob(f"{work}/state/w*.log"))
       for l in open(f) if "OUTSIDE FAULTS" in l or "WRONG READ" in l]
print("\n".join(bad[:10] + ([f"  ... {len(bad) - 10} more in {work}/state/w*.log"] if len(bad) > 10 else [])) or "  (none)")
for c in checks:
    print(f"final check through the {c['label']}: {c['files']} files checked in {c['seconds']} s, {c['lost']} lost"
          + (f" ({c['wrong_content']} with wrong content)" if c["wrong_content"] else "")
          + (f"; {c['unchecked']} NOT CHECKED (out of time)" if c["unchecked"] else ""))
lost = max([c["lost"] for c in checks] or [0])
print(f"files lost: {lost}")
open(f"{work}/result", "w").write(f"{lost} {num.get('wrong_reads', 0)}\n")
EOF
read -r LOST WRONG < "$WORK/result"
[ "${#CHECKS[@]}" -eq 2 ] || BROKE+=("a final check is missing")
for b in "${BROKE[@]}"; do echo "RUN BROKE: $b"; done
if [ "$LOST" -gt 0 ] || [ "$WRONG" -gt 0 ]; then
    echo "FAILED: $LOST files lost, $WRONG wrong reads; see $WORK/faults.log and $WORK/state/w*.log"
    exit 1
fi
[ "${#BROKE[@]}" -eq 0 ] || { echo "the run broke; logs under $WORK"; exit 2; }
echo "OK: nothing lost"
