#!/usr/bin/env bash
# A 3-node cluster on this machine against a plain directory on the same disk, same run.
#
#   bench/cluster.sh [SIZE_MIB] [SMALL_FILES]      (defaults: 512 and 1000)
#   POLICY=media bench/cluster.sh ...               (the mount's root policy; default general)
#
# Three release `wormfs serve` processes on loopback, two disk directories each, the
# default policy (general: 2+1, 1 MiB stripes, one chunk per node), mounted through a
# follower (so metadata writes are forwarded to the master). Measures sequential write of
# SIZE_MIB including the final fsync, sequential read with caches dropped and a fresh mount,
# 4 KiB reads at random offsets of the big file (caches dropped, a fresh mount: RANDOM_READS
# of them, default 2000), and create / stat / read / delete of SMALL_FILES 4 KiB files, then
# the failover time:
# SIGKILL of the master until another node reports a new master. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-512}
FILES=${2:-1000}
RANDOM_READS=${RANDOM_READS:-2000}
ELECTION_MS=${ELECTION_MS:-1500}
POLICY=${POLICY:-general}
# WORMFS_BIN: measure that binary (another commit's, for a before/after) instead of building
BIN=${WORMFS_BIN:-target/release/wormfs}
[ -n "${WORMFS_BIN:-}" ] || cargo build --release -p wormfs-cli  # a stale binary would measure old code
WORK=${BENCH_DIR:-$PWD/target/bench-cluster}
rm -rf "$WORK"
mkdir -p "$WORK/plain" "$WORK/mnt"
source bench/lib/cluster-up.sh
"$BIN" --node "${ADDRS[$VIA]}" policy set / "$POLICY" > /dev/null
start_mount
SRC=/dev/shm/wormfs-bench-cluster-src
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$SRC"
declare -A R
for target in plain mnt; do
    dir="$WORK/$target"
    c0=$(cpu "${PIDS[@]}" "$MOUNT_PID")
    R[$target.write]=$(seconds dd if="$SRC" of="$dir/big" bs=4M conv=fsync)
    c1=$(cpu "${PIDS[@]}" "$MOUNT_PID")
    drop_caches
    if [ "$target" = mnt ]; then stop_mount; start_mount; fi
    c2=$(cpu "${PIDS[@]}" "$MOUNT_PID")
    R[$target.read]=$(seconds dd if="$dir/big" of=/dev/null bs=4M)
    c3=$(cpu "${PIDS[@]}" "$MOUNT_PID")
    drop_caches
    if [ "$target" = mnt ]; then stop_mount; start_mount; fi
    c4=$(cpu "${PIDS[@]}" "$MOUNT_PID")
    R[$target.random]=$(python3 - "$dir/big" "$RANDOM_READS" <<'PY'
import os, random, sys, time
path, n = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
blocks = os.fstat(fd).st_size // 4096
rng = random.Random(42)
t = time.perf_counter()
for _ in range(n):
    if len(os.pread(fd, 4096, rng.randrange(blocks) * 4096)) != 4096:
        sys.exit("short read")
print(f"{n / (time.perf_counter() - t):.0f}")
PY
)
    c5=$(cpu "${PIDS[@]}" "$MOUNT_PID")
    if [ "$target" = mnt ]; then
        R[cpu.random]=$(python3 -c "print(f'{($c5-$c4)/$HZ*1e6/$RANDOM_READS:.0f}')")
        R[cpu.write]=$(python3 -c "print(f'{($c1-$c0)/$HZ/($SIZE_MIB/1024):.2f}')")
        R[cpu.read]=$(python3 -c "print(f'{($c3-$c2)/$HZ/($SIZE_MIB/1024):.2f}')")
        pids="${PIDS[*]} $MOUNT_PID"
    else
        pids=""
    fi
    R[$target.small]=$(python3 bench/small-files.py "$dir/small" "$FILES" $pids)
done
# failover: SIGKILL the master, time until the mount's node names another one
T0=$(date +%s.%N)
kill -KILL "${PIDS[$MI]}"
NEW=""
for _ in $(seq 1 600); do NEW=$(master "${ADDRS[$VIA]}"); [ -n "$NEW" ] && [ "$NEW" != "$M" ] && break; sleep 0.05; done
T1=$(date +%s.%N)
FAILOVER=$(python3 -c "print(f'{$T1-$T0:.2f}')")

mbps() { python3 -c "print(f'{$SIZE_MIB/$1:.0f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
pw=$(mbps "${R[plain.write]}"); mw=$(mbps "${R[mnt.write]}")
pr=$(mbps "${R[plain.read]}"); mr=$(mbps "${R[mnt.read]}")
read -r pc ps pre pd pl _ <<< "${R[plain.small]}"
read -r mc ms mre md ml cc cs cre cd cl <<< "${R[mnt.small]}"
echo "| measure | plain dir | 3-node mount | mount ÷ plain |"
echo "|---|---|---|---|"
echo "| sequential write ${SIZE_MIB} MiB + fsync (MiB/s) | $pw | $mw | $(ratio "$mw" "$pw")× |"
echo "| sequential read, caches dropped (MiB/s) | $pr | $mr | $(ratio "$mr" "$pr")× |"
echo "| 4 KiB random reads, caches dropped (reads/s) | ${R[plain.random]} | ${R[mnt.random]} | $(ratio "${R[mnt.random]}" "${R[plain.random]}")× |"
echo "| create 4 KiB files (files/s) | $pc | $mc | $(ratio "$mc" "$pc")× |"
echo "| stat (files/s) | $ps | $ms | $(ratio "$ms" "$ps")× |"
echo "| read 4 KiB files (files/s) | $pre | $mre | $(ratio "$mre" "$pre")× |"
echo "| delete (files/s) | $pd | $md | $(ratio "$md" "$pd")× |"
echo "| ls -l (entries/s) | $pl | $ml | $(ratio "$ml" "$pl")× |"
echo
echo "CPU seconds (3 nodes + mount) per GiB: write ${R[cpu.write]}, read ${R[cpu.read]}"
echo "CPU µs (3 nodes + mount) per 4 KiB random read: ${R[cpu.random]}"
echo "CPU µs (3 nodes + mount) per 4 KiB file: create $cc, stat $cs, read $cre, delete $cd, ls -l $cl per entry"
echo "Policy: $POLICY."
echo "Failover: master $M SIGKILLed, $NEW named master ${FAILOVER} s later (election timeout ${ELECTION_MS} ms)."
