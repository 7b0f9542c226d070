"""Create / stat / read / delete N files of 4 KiB in a new directory DIR, one after the
other; prints the four rates in files per second, then, when PIDs are given, the CPU time
those processes spent per file in each of the four phases (microseconds; `-` without PIDs).
Used by bench/fuse.sh and bench/cluster.sh:  python3 bench/small-files.py DIR N [PID...]"""
import os, sys, time

d, n, pids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.makedirs(d); data = os.urandom(4096); rates = []; cpus = []
hz = os.sysconf("SC_CLK_TCK")

def cpu():  # utime + stime of the given processes, in seconds
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / hz

def phase(work):
    c, t = cpu(), time.perf_counter()
    work()
    rates.append(n / (time.perf_counter() - t)); cpus.append((cpu() - c) / n * 1e6)

def create():
    for i in range(n):
        with open(f"{d}/f{i}", "wb") as f: f.write(data)
def stat():
    for i in range(n): os.stat(f"{d}/f{i}")
def read():
    for i in range(n):
        with open(f"{d}/f{i}", "rb") as f: f.read()
def delete():
    for i in range(n): os.unlink(f"{d}/f{i}")

for w in (create, stat, read, delete): phase(w)
print(" ".join(f"{x:.0f}" for x in rates),
      " ".join(f"{x:.0f}" if pids else "-" for x in cpus))
