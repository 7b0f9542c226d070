"""Create / stat / read / delete N files of 4 KiB in a new directory DIR, one after the
other; prints the four rates in files per second. Used by bench/fuse.sh and
bench/cluster.sh:  python3 bench/small-files.py DIR N"""
import os, sys, time

d, n = sys.argv[1], int(sys.argv[2]); os.makedirs(d); data = os.urandom(4096); out = []
t = time.perf_counter()
for i in range(n):
    with open(f"{d}/f{i}", "wb") as f: f.write(data)
out.append(n / (time.perf_counter() - t)); t = time.perf_counter()
for i in range(n): os.stat(f"{d}/f{i}")
out.append(n / (time.perf_counter() - t)); t = time.perf_counter()
for i in range(n):
    with open(f"{d}/f{i}", "rb") as f: f.read()
out.append(n / (time.perf_counter() - t)); t = time.perf_counter()
for i in range(n): os.unlink(f"{d}/f{i}")
out.append(n / (time.perf_counter() - t))
print(" ".join(f"{x:.0f}" for x in out))
