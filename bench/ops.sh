#!/usr/bin/env bash
# Where one operation's CPU goes in a 3-node cluster: per process, per op.
#
#   bench/ops.sh OP [FILES]          OP: create | stat | read | delete   (FILES default 1000)
#   bench/ops.sh idle [SECONDS]      nothing for SECONDS (default 10): the cluster's own CPU per s
#   bench/ops.sh bigwrite|bigread [MIB]   one file of MIB MiB (default 512), written with a
#                                    final fsync, or read cold: CPU per GiB instead of per op
#   bench/ops.sh random [READS]      READS 4 KiB reads (default 2000) at random offsets of a
#                                    512 MiB file, cold (a fresh mount, caches dropped)
#   PERF=1 bench/ops.sh OP ...       also `perf record -g` the four processes during the op
#                                    (PERF=switches: their context switches, with stacks)
#                                    (bench/perf-share.py sorts its samples by kind of work)
#   THREADS=1|each bench/ops.sh OP ... also each process's context switches per op by thread
#                                    name (1) or by thread (each)
#   CALLS=1 bench/ops.sh OP ...      also the gRPC calls the mount's node answered per op, by
#                                    method
#   STRACE=1 bench/ops.sh OP ...     also `strace -c -f` a follower that is not the mount's node
#   MOUNT_VIA=master bench/ops.sh ... the mount goes through the master (default: a follower)
#   MOUNT_LOG=wormfs_fuse=info bench/ops.sh ...   the mount's log filter (default warn); at
#                                    info the mount logs how it read stripes when it stops
#
# bigwrite and bigread read the file back cold after the figures are taken and compare it
# with what was written.
#
# The cluster is bench/cluster.sh's (three release nodes on loopback, the mount through a
# follower, POLICY default media). FILES files of 4 KiB are created in /small (that is the
# measured op for `create`), then the op runs over all of them from one Python process, and
# the CPU each process spent in it (from /proc) is printed per op: the master, the mount's
# node, the other follower and the mount. Profiles are left in $WORK (perf.data, strace.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
OP=${1:?"usage: bench/ops.sh create|stat|read|delete|random|idle|bigwrite|bigread [N]"}
FILES=${2:-1000}
case "$OP" in
    create | stat | read | delete) UNIT=$OP; PER=$FILES; SCALE=1e6; IN="µs"; FMT=.0f ;;
    idle) UNIT=second; FILES=${2:-10}; PER=$FILES; SCALE=1e3; IN="ms"; FMT=.1f ;;
    random) UNIT=read; FILES=${2:-2000}; PER=$FILES; SCALE=1e6; IN="µs"; FMT=.0f ;;
    # CPU-s per GiB: ticks / HZ / (MIB / 1024)
    bigwrite | bigread) UNIT=GiB; PER=$(python3 -c "print($FILES / 1024)"); SCALE=1; IN="s"; FMT=.2f ;;
    *) echo "unknown op '$OP': use create, stat, read, delete, idle, random, bigwrite or bigread" >&2; exit 2 ;;
esac
ELECTION_MS=${ELECTION_MS:-1500}
POLICY=${POLICY:-media}
BIN=${WORMFS_BIN:-target/release/wormfs}
[ -n "${WORMFS_BIN:-}" ] || cargo build --release -p wormfs-cli  # a stale binary would measure old code
WORK=${BENCH_DIR:-$PWD/target/bench-ops}
if [ -d "$WORK" ]; then
    rm -rf "$WORK"
    # ext4 skips recently deleted inodes when it allocates one (a scan that took up to 15 %
    # of a run's profile right after the last run's files were removed)
    sync; sleep 6
fi
mkdir -p "$WORK/mnt"
SRC=/dev/shm/wormfs-bench-ops-src  # removed on exit by cluster-up.sh's cleanup
source bench/lib/cluster-up.sh
"$BIN" --node "${ADDRS[$VIA]}" policy set / "$POLICY" > /dev/null
start_mount
DIR="$WORK/mnt/small"
mkdir -p "$DIR"
run_op() {
    case "$1" in
        bigwrite) dd if="$SRC" of="$DIR/big" bs=4M conv=fsync status=none; return ;;
        bigread) dd if="$DIR/big" of=/dev/null bs=4M status=none; return ;;
        idle) sleep "$FILES"; return ;;
        random) python3 - "$DIR/big" "$FILES" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
blocks = os.fstat(fd).st_size // 4096
rng = random.Random(42)
for _ in range(int(sys.argv[2])):
    if len(os.pread(fd, 4096, rng.randrange(blocks) * 4096)) != 4096:
        sys.exit("short read")
PY
            return ;;
    esac
    python3 - "$1" "$DIR" "$FILES" <<'PY'
import os, sys
op, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    p = os.path.join(d, "f%d" % i)
    if op == "create":
        with open(p, "wb") as f:
            f.write(b"x" * 4096)
    elif op == "stat":
        os.stat(p)
    elif op == "read":
        with open(p, "rb") as f:
            if len(f.read()) != 4096:
                sys.exit("short read of " + p)
    elif op == "delete":
        os.unlink(p)
PY
}
if [ "$OP" = bigwrite ]; then
    head -c "$((FILES << 20))" /dev/urandom > "$SRC"
elif [ "$OP" = bigread ] || [ "$OP" = random ]; then
    mib=$FILES; [ "$OP" = random ] && mib=512
    head -c "$((mib << 20))" /dev/urandom > "$SRC"
    dd if="$SRC" of="$DIR/big" bs=4M conv=fsync status=none
    stop_mount; drop_caches; start_mount
elif [ "$OP" != create ] && [ "$OP" != idle ]; then
    run_op create
    # a fresh mount and no page cache, so stats and reads are cold
    stop_mount; drop_caches; start_mount
fi
F1=$(( (MI + 1) % 3 )); F2=$(( (MI + 2) % 3 ))
via() { [ "$1" = "$VIA" ] && echo ", the mount's node" || true; }
ALL=( "${PIDS[$MI]}" "${PIDS[$F1]}" "${PIDS[$F2]}" "$MOUNT_PID" )
NAMES=( "master (node$((MI + 1))$(via "$MI"))" "follower (node$((F1 + 1))$(via "$F1"))" "follower (node$((F2 + 1))$(via "$F2"))" "mount" )
# the whole machine's busy ticks (every CPU: kernel threads such as page-cache writeback
# count too, which no process's figure holds)
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# context switches of every thread of a process so far (each is a hop between threads, or a
# wait for I/O)
switches() { cat /proc/"$1"/task/*/status 2> /dev/null | awk '/ctxt_switches/ {n += $2} END {print n}'; }
declare -A B S
for p in "${ALL[@]}"; do B[$p]=$(cpu "$p"); S[$p]=$(switches "$p"); done
M0=$(busy)
PP=
if [ -n "${STRACE:-}" ]; then
    strace -c -f -o "$WORK/strace.txt" -p "${PIDS[$F2]}" 2> /dev/null & PP=$!
    sleep 1
elif [ -n "${PERF:-}" ]; then
    # PERF=switches: where the threads block or yield instead of where the CPU goes
    if [ "$PERF" = switches ]; then EVENT=(-e sched:sched_switch); else EVENT=(-F 2000); fi
    perf record "${EVENT[@]}" -g -o "$WORK/perf.data" -p "$(IFS=,; echo "${ALL[*]}")" 2> /dev/null & PP=$!
    sleep 0.5
fi
# every thread's context switches, summed by thread name (THREADS=1) or one line per thread
# (THREADS=each: name/tid)
threads() {
    for t in /proc/"$1"/task/*; do
        local name; name=$(cat "$t/comm" 2> /dev/null) || continue
        [ "$THREADS" = each ] && name="$name/${t##*/}"
        echo "$name $(awk '/ctxt_switches/ {n += $2} END {print n}' "$t/status" 2> /dev/null)"
    done | awk '{n[$1] += $2; c[$1]++} END {for (k in n) print k, c[k], n[k]}' | sort
}
if [ -n "${THREADS:-}" ]; then for i in 0 1 2 3; do threads "${ALL[$i]}" > "$WORK/threads.$i.before"; done; fi
# the gRPC calls the mount's node answered so far, by method (from its /metrics)
calls() { curl -s "http://127.0.0.1:${ADMIN[$VIA]}/metrics" | awk -F'[{}]' '/^wormfs_grpc_requests_total/ {split($2, l, "\""); n[l[2]] += $3} END {for (k in n) print k, n[k]}' | sort; }
[ -z "${CALLS:-}" ] || calls > "$WORK/calls.before"
t0=$(date +%s.%N)
run_op "$OP"
t1=$(date +%s.%N)
M1=$(busy)
if [ -n "$PP" ]; then kill -INT "$PP"; wait "$PP" || true; fi
secs=$(python3 -c "print($t1 - $t0)")
D=(); W=()
total=0
for i in 0 1 2 3; do
    p=${ALL[$i]}; D[i]=$(( $(cpu "$p") - B[$p] )); total=$(( total + D[i] ))
    W[i]=$(( $(switches "$p") - S[$p] ))
done
if [ "$OP" = bigread ] || [ "$OP" = bigwrite ]; then
    # once the figures are taken: the bytes read back cold through the cluster are the ones
    # written
    stop_mount; drop_caches; start_mount
    cmp "$DIR/big" "$SRC" || { echo "the file read back differs from the one written" >&2; exit 1; }
fi
rm -f "$SRC"
echo "$FILES × $OP, policy $POLICY: $(python3 -c "print(f'{$secs:.2f} s, {$FILES / $secs:.0f} /s')") (MiB for big files)"
for i in 0 1 2 3; do
    echo "  ${NAMES[$i]}: $(python3 -c "print(f'{${D[i]} / $HZ * $SCALE / $PER:$FMT}')") $IN CPU per $UNIT, $(python3 -c "print(f'{${W[i]} / $PER:.1f}')") context switches"
done
echo "  all four: $(python3 -c "print(f'{$total / $HZ * $SCALE / $PER:$FMT}')") $IN CPU per $UNIT"
echo "  whole machine (from /proc/stat): $(python3 -c "print(f'{($M1 - $M0) / $HZ * $SCALE / $PER:$FMT}')") $IN CPU per $UNIT"
if [ -n "${CALLS:-}" ]; then
    echo "  gRPC calls per $UNIT to the mount's node, by method:"
    calls | join -a1 - "$WORK/calls.before" | awk -v per="$PER" '{d = ($2 - $3) / per; if (d > 0) printf "    %s %.2f\n", $1, d}'
fi
if [ -n "${THREADS:-}" ]; then
    for i in 0 1 2 3; do
        echo "  context switches per $UNIT by thread of the ${NAMES[$i]} (name, threads, switches):"
        threads "${ALL[$i]}" | join -a1 - "$WORK/threads.$i.before" | awk -v per="$PER" '{printf "    %s %d %.1f\n", $1, $2, ($3 - $5) / per}'
    done
fi
[ -z "${PERF:-}" ] || echo "profile: bench/perf-share.py $WORK/perf.data (or perf report -i $WORK/perf.data)"
[ -z "${STRACE:-}" ] || echo "system calls of node$((F2 + 1)): $WORK/strace.txt"
