#!/usr/bin/env python3
"""Where the CPU of a `perf record -g` profile goes, by kind of work, per process.

    bench/perf-share.py PERF_DATA            shares of all samples, then of each process
    bench/perf-share.py PERF_DATA PID KIND   the commonest call chains of one kind in one process

Each sample is put in one kind by its innermost frame (and, for the kernel, the kernel
frames under it): in the kernel, file systems and block I/O (`k:fs`), futexes (`k:futex`,
threads waking each other), TCP/IP (`k:net`), epoll, the scheduler, FUSE, anything else
(`k:other`, mostly page faults); in user space, TLS (OpenSSL), SQLite, the allocator,
memcpy/memmove, gRPC (h2, hyper, tonic, http), serde, prost, openraft, libp2p, tokio,
checksums, fuser, and the rest of WormFS (`u:wormfs`, coding included). bench/ops.sh
PERF=1 makes such a profile of one operation.
"""
import collections
import re
import subprocess
import sys

KERNEL = [
    ("k:fs", r"ext4|jbd2|blk_|nvme|virtio_queue|file_write_and_wait|fsync|filemap|iomap|xfs|btrfs"),
    ("k:futex", r"futex"),
    ("k:net", r"tcp|skb|sock|ip_|net_rx|__dev_queue|loopback|napi"),
    ("k:epoll", r"epoll|ep_poll"),
    ("k:sched", r"finish_task_switch|schedule|_raw_spin_unlock_irqrestore|try_to_wake|enqueue|dequeue|pick_next"),
    ("k:fuse", r"fuse"),
]
USER = [
    ("u:tls", r"libcrypto|libssl|ssl|aes|gcm|EVP_|BIO_|OPENSSL|ossl"),
    ("u:sqlite", r"sqlite3|pcache|[Bb]tree|Vdbe"),
    ("u:malloc", r"malloc|_int_|cfree|realloc|unlink_chunk|tcache|__rust_dealloc|__rust_alloc"),
    ("u:mem", r"memmove|memcpy|memset|memcmp"),
    ("u:grpc", r"h2::|hyper::|tonic::|http::|tower"),
    ("u:serde", r"serde"),
    ("u:prost", r"prost"),
    ("u:openraft", r"openraft"),
    ("u:libp2p", r"yamux|libp2p|multistream"),
    ("u:tokio", r"tokio"),
    ("u:checksum", r"crc32|blake|checksum"),
    ("u:fuser", r"fuser"),
]


def samples(path):
    """Yields (pid, frames) for each sample, innermost frame first."""
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "pid,ip,sym,dso"],
        capture_output=True, text=True, check=True,
    ).stdout
    for block in out.split("\n\n"):
        lines = [x.strip() for x in block.strip().split("\n") if x.strip()]
        if len(lines) >= 2:
            yield lines[0].split()[0], lines[1:]


def kind(frames):
    leaf = frames[0]
    if "kallsyms" in leaf:
        chain = " ".join(f for f in frames if "kallsyms" in f)
        return next((k for k, pat in KERNEL if re.search(pat, chain)), "k:other")
    return next((k for k, pat in USER if re.search(pat, leaf)), "u:wormfs")


def main():
    if len(sys.argv) not in (2, 4):
        sys.exit(__doc__)
    path = sys.argv[1]
    if len(sys.argv) == 4:
        pid, want = sys.argv[2], sys.argv[3]
        chains = collections.Counter()
        for p, frames in samples(path):
            if p == pid and kind(frames) == want:
                names = [re.sub(r"^\S+\s+", "", f).split(" (")[0][:60] for f in frames[:6]]
                chains[" <- ".join(names)] += 1
        for chain, n in chains.most_common(25):
            print(n, chain)
        return
    per = collections.defaultdict(collections.Counter)
    for p, frames in samples(path):
        per[p][kind(frames)] += 1
    total = collections.Counter()
    for c in per.values():
        total.update(c)
    n = sum(total.values())
    print(f"all processes, {n} samples: " + ", ".join(
        f"{k} {100 * m / n:.1f} %" for k, m in total.most_common(10)))
    for p, c in sorted(per.items(), key=lambda pc: -sum(pc[1].values())):
        m = sum(c.values())
        print(f"pid {p}, {100 * m / n:.1f} % of samples: " + ", ".join(
            f"{k} {100 * v / m:.1f} %" for k, v in c.most_common(8)))


if __name__ == "__main__":
    main()
