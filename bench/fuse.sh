#!/usr/bin/env bash
# The mount against a plain directory on the same disk, in the same run.
#
#   bench/fuse.sh [SIZE_MIB] [SMALL_FILES]      (defaults: 1024 and 5000)
#
# A release node over 6 disk directories with the `media` policy (4+2, 4 MiB stripes) as
# the default, mounted with `wormfs mount`. For the plain directory and for the mount:
# sequential write of SIZE_MIB including the final fsync, sequential read with the page
# cache dropped (and a fresh mount, so the stripe cache is empty too), 4 KiB random reads,
# a re-read of a 128 MiB file after dropping its page cache (the mount answers it from its
# stripe cache: the FUSE path alone), and create / stat / read / delete of SMALL_FILES files
# of 4 KiB. Then the CPU seconds the node and the mount used per GiB written, read and
# re-read, and per random read.
# Prints a Markdown table of ratios.
# INLINE_MAX=0 bench/fuse.sh codes even the smallest files into chunks (the node's
# `policies.inline_max`; its default keeps stripes of up to 4 KiB in the metadata).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
FILES=${2:-5000}
REREAD_MIB=$(( SIZE_MIB < 128 ? SIZE_MIB : 128 )) # fits the mount's 256 MiB stripe cache
# WORMFS_BIN: measure that binary (another commit's, for a before/after) instead of building
BIN=${WORMFS_BIN:-target/release/wormfs}
[ -n "${WORMFS_BIN:-}" ] || cargo build --release -p wormfs-cli  # a stale binary would measure old code
WORK=${BENCH_DIR:-$PWD/target/bench-fuse}
rm -rf "$WORK"
mkdir -p "$WORK/plain" "$WORK/mnt"
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
${INLINE_MAX:+inline_max = $INLINE_MAX}
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

RUST_LOG=warn "$BIN" serve --config "$WORK/node.toml" > "$WORK/node.out" 2> "$WORK/node.log" &
NODE_PID=$!
wait_for_line "$WORK/node.out" "listening on"
ADDR=$(sed -n 's/^wormfs-node listening on //p' "$WORK/node.out")
# the node wrote its first admin's identity into its data directory
export WORMFS_IDENTITY="$WORK/meta/admin.identity"

start_mount() {
    RUST_LOG=warn "$BIN" --node "$ADDR" mount "$WORK/mnt" > "$WORK/mount.out" 2>> "$WORK/mount.log" &
    MOUNT_PID=$!
    for _ in $(seq 1 300); do mountpoint -q "$WORK/mnt" && return 0; sleep 0.1; done
    echo "mount did not appear" >&2; exit 1
}
stop_mount() { kill -TERM "$MOUNT_PID"; wait "$MOUNT_PID" || true; MOUNT_PID=; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime in clock ticks
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(cannot drop caches)" >&2; }
start_mount

SRC=/dev/shm/wormfs-bench-src
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$SRC"
trap 'cleanup; rm -f "$SRC"' EXIT
HZ=$(getconf CLK_TCK)

seconds() { python3 -c 'import sys,time; t=time.perf_counter(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(f"{time.perf_counter()-t:.3f}")' "$@"; }

declare -A R
for target in plain mnt; do
    dir="$WORK/$target"
    n0=$(cpu "$NODE_PID"); m0=$(cpu "$MOUNT_PID")
    R[$target.write]=$(seconds dd if="$SRC" of="$dir/big" bs=4M conv=fsync)
    n1=$(cpu "$NODE_PID"); m1=$(cpu "$MOUNT_PID")
    drop_caches
    if [ "$target" = mnt ]; then stop_mount; start_mount; m1=$(cpu "$MOUNT_PID"); fi
    R[$target.read]=$(seconds dd if="$dir/big" of=/dev/null bs=4M)
    n2=$(cpu "$NODE_PID"); m2=$(cpu "$MOUNT_PID")
    if [ "$target" = mnt ]; then
        R[cpu.write]=$(python3 -c "print(f'{(($n1-$n0)+($m1-$m0))/$HZ/($SIZE_MIB/1024):.2f}')")
        R[cpu.read]=$(python3 -c "print(f'{(($n2-$n1)+($m2-$m1))/$HZ/($SIZE_MIB/1024):.2f}')")
    fi
    drop_caches
    if [ "$target" = mnt ]; then stop_mount; start_mount; fi # an empty stripe cache too
    # the node's and the mount's pids, for the CPU they spend on the timed part alone
    if [ "$target" = mnt ]; then pids="$NODE_PID $MOUNT_PID"; else pids=""; fi
    # shellcheck disable=SC2086
    read -r "R[$target.rand]" "R[cpu.rand]" < <(python3 - "$dir/big" $pids <<'PY'
import os, random, sys, time
sys.path.insert(0, "bench/lib"); from proc_cpu import cpu_seconds
def cpu(): return cpu_seconds(sys.argv[2:])
fd = os.open(sys.argv[1], os.O_RDONLY); size = os.fstat(fd).st_size
random.seed(7); offs = [random.randrange(0, size // 4096) * 4096 for _ in range(2000)]
c = cpu(); t = time.perf_counter()
for o in offs: os.pread(fd, 4096, o)
rate = len(offs) / (time.perf_counter() - t)
used = f"{(cpu() - c) / len(offs) * 1e6:.0f}" if sys.argv[2:] else "-"
print(f"{rate:.0f} {used}")
PY
)
    # A file that fits the mount's stripe cache, read once, then re-read three times after
    # dropping its page cache: the plain directory reads it from the disk again, the mount
    # from its stripe cache, so no chunk file is read. That is the FUSE path's own speed.
    head -c "$((REREAD_MIB << 20))" "$SRC" > "$dir/reread"
    # shellcheck disable=SC2086
    read -r "R[$target.reread]" "R[cpu.reread]" < <(python3 - "$dir/reread" $pids <<'PY'
import os, statistics, sys, time
sys.path.insert(0, "bench/lib"); from proc_cpu import cpu_seconds
def cpu(): return cpu_seconds(sys.argv[2:])
fd = os.open(sys.argv[1], os.O_RDONLY); buf = bytearray(4 << 20); rates = []; moved = 0
for i in range(4):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.lseek(fd, 0, os.SEEK_SET); n = 0
    if i == 1: c = cpu()
    t = time.perf_counter()
    while (k := os.readv(fd, [buf])): n += k
    if i: rates.append(n / (time.perf_counter() - t) / (1 << 20)); moved += n
used = f"{(cpu() - c) / (moved / (1 << 30)):.2f}" if sys.argv[2:] else "-"
print(f"{statistics.median(rates):.0f} {used}")
PY
)
    R[$target.small]=$(python3 bench/small-files.py "$dir/small" "$FILES" $pids)
done

mbps() { python3 -c "print(f'{$SIZE_MIB/$1:.0f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
pw=$(mbps "${R[plain.write]}"); mw=$(mbps "${R[mnt.write]}")
pr=$(mbps "${R[plain.read]}"); mr=$(mbps "${R[mnt.read]}")
read -r pc ps pre pd pl _ <<< "${R[plain.small]}"
read -r mc ms mre md ml cc cs cre cd cl <<< "${R[mnt.small]}"
echo "| measure | plain dir | WormFS mount | mount ÷ plain |"
echo "|---|---|---|---|"
echo "| sequential write ${SIZE_MIB} MiB + fsync (MiB/s) | $pw | $mw | $(ratio "$mw" "$pw")× |"
echo "| sequential read, caches dropped (MiB/s) | $pr | $mr | $(ratio "$mr" "$pr")× |"
echo "| re-read ${REREAD_MIB} MiB, page cache dropped: plain from disk, mount from its stripe cache (MiB/s) | ${R[plain.reread]} | ${R[mnt.reread]} | $(ratio "${R[mnt.reread]}" "${R[plain.reread]}")× |"
echo "| 4 KiB random reads (IOPS) | ${R[plain.rand]} | ${R[mnt.rand]} | $(ratio "${R[mnt.rand]}" "${R[plain.rand]}")× |"
echo "| create 4 KiB files (files/s) | $pc | $mc | $(ratio "$mc" "$pc")× |"
echo "| stat (files/s) | $ps | $ms | $(ratio "$ms" "$ps")× |"
echo "| read 4 KiB files (files/s) | $pre | $mre | $(ratio "$mre" "$pre")× |"
echo "| delete (files/s) | $pd | $md | $(ratio "$md" "$pd")× |"
echo "| ls -l (entries/s) | $pl | $ml | $(ratio "$ml" "$pl")× |"
echo
echo "CPU seconds (node + mount) per GiB: write ${R[cpu.write]}, read ${R[cpu.read]}, re-read from the stripe cache ${R[cpu.reread]}"
echo "CPU µs (node + mount) per 4 KiB random read: ${R[cpu.rand]}"
echo "CPU µs (node + mount) per 4 KiB file: create $cc, stat $cs, read $cre, delete $cd, ls -l $cl per entry"
