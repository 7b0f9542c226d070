"""Create / stat / read / delete N files of 4 KiB in a new directory DIR, one after the
other, and list the directory with each entry's attributes (what `ls -l` does) between
the read and the delete; prints the rates in files (entries) per second in the order
create stat read delete list, then, when PIDs are given, the CPU time those processes
spent per file in each phase, in the same order (microseconds; `-` without PIDs).
Used by bench/fuse.sh and bench/cluster.sh:  python3 bench/small-files.py DIR N [PID...]"""
import os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from proc_cpu import cpu_seconds

d, n, pids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.makedirs(d); data = os.urandom(4096); rates = []; cpus = []

def cpu():  # utime + stime of the given processes, in seconds
    return cpu_seconds(pids)

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
def listing():  # ls -l: the names, then each entry's attributes
    if sum(1 for e in os.scandir(d) if e.stat(follow_symlinks=False)) != n:
        sys.exit("the listing misses files")

for w in (create, stat, read, listing, delete): phase(w)
order = (0, 1, 2, 4, 3)  # create stat read delete list: the first four as before
print(" ".join(f"{rates[i]:.0f}" for i in order),
      " ".join(f"{cpus[i]:.0f}" if pids else "-" for i in order))
