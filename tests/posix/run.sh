#!/usr/bin/env bash
# POSIX conformance of a WormFS mount with pjdfstest (the Rust rewrite, crate `pjdfstest`).
#
#   tests/posix/run.sh [WORMFS_BIN] [PJDFSTEST_BIN] [FSX_BIN]
#
# Starts `wormfs quickstart` on a temporary directory, runs pjdfstest on the mount with
# tests/posix/pjdfstest.toml and compares the failing tests with
# tests/posix/expected-failures.txt; then, when an fsx binary (crate `fsx`) is given, runs
# FSX_OPS (default 10000) random reads, writes and truncations on one file of the same
# mount, each read checked against fsx's own model of the file (seed FSX_SEED, default 1);
# and stops the quickstart with SIGINT. Exit status: 0 when every pjdfstest failure is
# expected and fsx found nothing, 1 when some failure is new or fsx failed, 2 when the run
# itself broke (no mount, pjdfstest crashed or timed out). Newly passing tests are reported
# but do not fail the run: delete them from the expected list.
#
# Needs root (pjdfstest switches users with seteuid and creates device nodes), /dev/fuse,
# and the users/groups named in pjdfstest.toml ([dummy_auth]).
#
# Environment: POSIX_OUT (directory of the log, default target/posix),
# POSIX_START_TIMEOUT (seconds for the mount to appear, default 60),
# POSIX_TIMEOUT (seconds for the whole pjdfstest run, and for the fsx run, default 1800),
# FSX_OPS, FSX_SEED.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

wormfs="${1:-$root/target/debug/wormfs}"
pjd="${2:-$(command -v pjdfstest || true)}"
fsx="${3:-}"
fsx_ops="${FSX_OPS:-10000}"
fsx_seed="${FSX_SEED:-1}"
config="$here/pjdfstest.toml"
expected_file="$here/expected-failures.txt"
out="${POSIX_OUT:-$root/target/posix}"
start_timeout="${POSIX_START_TIMEOUT:-60}"
run_timeout="${POSIX_TIMEOUT:-1800}"

die() {
    echo "posix: $*" >&2
    exit 2
}

[ -x "$wormfs" ] || die "no wormfs binary at '$wormfs' (build it: cargo build -p wormfs-cli)"
if [ -z "$pjd" ] || [ ! -x "$pjd" ]; then
    die "pjdfstest not found (cargo install pjdfstest --version 0.2.2 --locked)"
fi
[ -e /dev/fuse ] || die "/dev/fuse is missing"
[ "$(id -u)" -eq 0 ] || echo "posix: warning: not root, pjdfstest skips the tests that need root" >&2
for user in nobody daemon; do
    getent passwd "$user" >/dev/null || die "user '$user' is missing (see [dummy_auth] in $config)"
done
for group in nogroup daemon; do
    getent group "$group" >/dev/null || die "group '$group' is missing (see [dummy_auth] in $config)"
done

wormfs="$(cd "$(dirname "$wormfs")" && pwd)/$(basename "$wormfs")"
pjd="$(cd "$(dirname "$pjd")" && pwd)/$(basename "$pjd")"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log="$out/pjdfstest.log"
qs_log="$out/quickstart.log"

work="$(mktemp -d /tmp/wormfs-posix.XXXXXX)"
chmod 755 "$work" # the unprivileged users of the permission tests walk through it
mnt="$work/fs/mnt"
secondary="$work/secondary" # another file system, for the EXDEV tests
mkdir -p "$secondary"
qs_pid=""

mounted() {
    mountpoint -q "$mnt" 2>/dev/null
}

# Stops the quickstart with SIGINT and waits for it; escalates only when it hangs.
stop_quickstart() {
    [ -n "$qs_pid" ] || return 0
    local pid="$qs_pid" status=0 i
    qs_pid=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do # 30 s
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "posix: quickstart did not stop on SIGINT within 30 s, sending SIGTERM" >&2
            kill -TERM "$pid" 2>/dev/null || true
            sleep 5
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    if mounted; then
        echo "posix: $mnt is still mounted after the quickstart ended, detaching it" >&2
        fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ]; then
        echo "posix: quickstart exited with status $status (log: $qs_log)" >&2
    fi
    return 0
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    stop_quickstart
    # Never delete through a live mount.
    if ! mounted; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nobody listens on, from 7191 up.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts the quickstart on a free port and waits until the mount is up. A port taken between
# the check and the bind makes the quickstart exit early: then the next port is tried.
start_quickstart() {
    local port=7191 attempt deadline
    # Without allow_other the kernel refuses every uid but the mounter's, and pjdfstest's
    # permission tests (run under seteuid) then see EACCES: pass the flag once it exists.
    local extra=()
    if "$wormfs" quickstart --help 2>/dev/null | grep -q -- '--allow-other'; then
        extra+=(--allow-other)
    fi
    for ((attempt = 0; attempt < 5; attempt++)); do
        # the quickstart's admin listener takes the port 60 above
        while ! port_free "$port" || ! port_free "$((port + 60))"; do
            port=$((port + 1))
            [ "$port" -lt 7300 ] || die "no free loopback port in 7191..7299"
        done
        rm -rf "$work/fs"
        # its client config (nodes and admin identity) goes under $work, not into $HOME
        XDG_CONFIG_HOME="$work/config" XDG_CACHE_HOME="$work/cache" \
        "$wormfs" quickstart --dir "$work/fs" --disks 3 --listen "127.0.0.1:$port" \
            ${extra[@]+"${extra[@]}"} >"$qs_log" 2>&1 </dev/null &
        qs_pid=$!
        deadline=$((SECONDS + start_timeout))
        while [ "$SECONDS" -lt "$deadline" ]; do
            if ! kill -0 "$qs_pid" 2>/dev/null; then
                wait "$qs_pid" 2>/dev/null || true
                qs_pid=""
                echo "posix: quickstart on port $port exited early:" >&2
                tail -n 5 "$qs_log" >&2
                break
            fi
            if grep -q "Stop with" "$qs_log" && mounted; then
                echo "posix: WormFS mounted at $mnt (node 127.0.0.1:$port${extra[*]:+, ${extra[*]}})"
                return 0
            fi
            sleep 0.1
        done
        [ -z "$qs_pid" ] || die "the mount did not appear within ${start_timeout}s (log: $qs_log)"
        port=$((port + 1))
    done
    die "quickstart failed to start 5 times (log: $qs_log)"
}

start_quickstart

echo "posix: running $pjd on $mnt (full output: $log)"
started=$SECONDS
pjd_status=0
(cd "$work" && NO_COLOR=1 timeout "$run_timeout" "$pjd" -c "$config" -p "$mnt" -s "$secondary") \
    >"$log" 2>&1 || pjd_status=$?
elapsed=$((SECONDS - started))

fsx_status=0
if [ -n "$fsx" ]; then
    [ -x "$fsx" ] || die "no fsx binary at '$fsx' (cargo install fsx --version 0.3.2 --locked)"
    mounted || die "the mount went away during pjdfstest (log: $qs_log)"
    echo "posix: running fsx, $fsx_ops operations, seed $fsx_seed (log: $out/fsx.log)"
    fsx_started=$SECONDS
    (cd "$out" && timeout "$run_timeout" "$fsx" -N "$fsx_ops" -S "$fsx_seed" -P "$out" \
        "$mnt/fsx.file") >"$out/fsx.log" 2>&1 || fsx_status=$?
    echo "fsx: status $fsx_status after $((SECONDS - fsx_started))s: $(tail -n 1 "$out/fsx.log")"
fi

stop_quickstart

# The ANSI colours off (pjdfstest colours even when NO_COLOR is not honoured).
sed -i 's/\x1b\[[0-9;]*m//g' "$log"
if [ "$pjd_status" -eq 124 ]; then
    die "pjdfstest timed out after ${run_timeout}s (log: $log)"
fi
if ! grep -q '^Summary: ' "$log"; then
    tail -n 20 "$log" >&2
    die "pjdfstest ended without a summary (status $pjd_status, log: $log)"
fi

# Result lines are "NAME   ok|FAILED|skipped|failed as expected|PASSED UNEXPECTEDLY".
results="$work/results"
awk '$1 ~ /::/ {
        if ($NF == "ok" && NF == 2) print "pass", $1;
        else if ($NF == "FAILED" && NF == 2) print "fail", $1;
        else if ($NF == "skipped" && NF == 2) print "skip", $1;
        else if ($0 ~ /failed as expected$/) print "fail", $1;
        else if ($0 ~ /PASSED UNEXPECTEDLY$/) print "pass", $1;
    }' "$log" >"$results"
awk '$1 == "fail" { print $2 }' "$results" | sort -u >"$work/failed"
awk '$1 == "pass" { print $2 }' "$results" | sort -u >"$work/passed"
n_pass=$(wc -l <"$work/passed")
n_fail=$(wc -l <"$work/failed")
n_skip=$(awk '$1 == "skip"' "$results" | wc -l)

if [ -f "$expected_file" ]; then
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$expected_file" | { grep -v '^$' || true; } | sort -u >"$work/expected"
else
    : >"$work/expected"
fi
comm -23 "$work/failed" "$work/expected" >"$work/new"
comm -12 "$work/failed" "$work/expected" >"$work/known"
comm -12 "$work/passed" "$work/expected" >"$work/fixed"
comm -23 "$work/expected" <(sort -u "$work/failed" "$work/passed") >"$work/unseen"
n_new=$(wc -l <"$work/new")
n_known=$(wc -l <"$work/known")

if [ -s "$work/fixed" ]; then
    echo "posix: newly passing (remove from tests/posix/expected-failures.txt):"
    sed 's/^/  /' "$work/fixed"
fi
if [ -s "$work/unseen" ]; then
    echo "posix: expected failures that did not run (skipped or renamed):"
    sed 's/^/  /' "$work/unseen"
fi
if [ "$n_new" -gt 0 ]; then
    echo "posix: NEW failures (not in tests/posix/expected-failures.txt):"
    while read -r name; do
        echo "  $name"
        # The failure message: the lines after the result line up to the next result line.
        awk -v t="$name" '$1 == t && $NF == "FAILED" { p = 1; next }
            p && /^(Backtrace:|[^ \t])/ { exit }
            p && /^(\t| *(left|right):)/ && n++ < 3 { sub(/^\t/, ""); print "      " $0 }' "$log"
    done <"$work/new"
fi
echo "posix: ${elapsed}s, $n_skip skipped; log: $log"
echo "pjdfstest: $n_pass passed, $n_fail failed ($n_known expected)"

if [ "$fsx_status" -ne 0 ]; then
    echo "posix: fsx FAILED (status $fsx_status); its last lines:" >&2
    tail -n 30 "$out/fsx.log" >&2
    exit 1
fi
if [ "$n_new" -gt 0 ]; then
    exit 1
fi
exit 0
