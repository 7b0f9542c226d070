"""The CPU time processes have used, for the benchmark scripts that count it themselves."""
import os

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """utime + stime of the processes `pids` (from /proc), in seconds."""
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / HZ
