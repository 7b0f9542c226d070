#!/usr/bin/env python3
"""The workload and the checker of tests/soak.sh (see its header).

    soak.py work MNT STATE_DIR WORKER SEED MAX_FILES   one worker, until STATE_DIR/stop exists
    soak.py check MNT STATE_DIR LABEL SECONDS          read back every worker's ledger

A worker owns the directory MNT/wWORKER and does one operation at a time, chosen by a
random generator seeded with SEED and WORKER: create, read, patch, append, overwrite,
rename, delete, list. A change is *acknowledged* when every call succeeded, the last
being fsync and close; only then does the worker's ledger (STATE_DIR/wWORKER.ledger.json,
name -> size and sha256) take it. A change that failed leaves the file's content unknown:
the file leaves the ledger (a failed rename is remembered, and the file must be found
under one of its two names). Reads compare the whole file with the ledger; a wrong byte,
a wrong size or a missing file is a wrong read, whether or not a fault is on. An error
(EIO, ENOTCONN, ...) is "refused" for a change and "unavailable" for a read when it
happened during a fault window (STATE_DIR/fault-until holds the end of the current one,
in Unix seconds), else an "error outside faults". Counters go to STATE_DIR/wWORKER.stats.json,
events to STATE_DIR/wWORKER.log, the operation in progress to STATE_DIR/wWORKER.current.

`check` reads every ledger file through MNT, and looks for every file of a failed rename
under both its names; it prints one line per lost file and a JSON summary as the last line.
It stops after SECONDS ("unchecked" in the summary counts the files it did not get to).
"""
import errno
import hashlib
import json
import os
import random
import sys
import time

KiB, MiB = 1 << 10, 1 << 20


def now():
    return time.time()


def stamp():
    return time.strftime("%H:%M:%S")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


class Step:
    """Names the call that failed in the error it raises (open, pwrite, fsync, close, ...)."""

    def __init__(self):
        self.name = ""

    def __call__(self, name, f, *args):
        self.name = name
        try:
            return f(*args)
        except OSError as e:
            # OSError(errno, ...) is the errno's subclass again (FileNotFoundError, ...)
            raise OSError(e.errno, f"{name}: {e.strerror}") from None


def read_file(path):
    """The whole file, read past the kernel's page cache (what the mount itself returns)."""
    step = Step()
    fd = step("open", os.open, path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        parts = []
        while True:
            b = step("read", os.read, fd, 4 * MiB)
            if not b:
                break
            parts.append(b)
        return b"".join(parts)
    finally:
        os.close(fd)


def write_at(path, flags, offset, data):
    """pwrite `data` at `offset` of `path` opened with `flags`, then fsync and close; any
    failure (of the close too) raises, naming the call."""
    step = Step()
    fd = step("open", os.open, path, os.O_WRONLY | flags, 0o644)
    try:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            pos += step("pwrite", os.pwrite, fd, view[pos:pos + 4 * MiB], offset + pos)
        step("fsync", os.fsync, fd)
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        raise
    step("close", os.close, fd)


class Worker:
    def __init__(self, mnt, state, worker, seed, max_files):
        self.dir = os.path.join(mnt, f"w{worker}")
        self.state = state
        self.prefix = os.path.join(state, f"w{worker}")
        self.rng = random.Random(f"soak-{seed}-{worker}")
        self.max_files = max_files
        self.ledger = {}  # name -> {"size", "sha256"}: acknowledged content
        self.renames = []  # {"from", "to", "size", "sha256"}: renames that failed
        self.next_id = 0
        self.stats = {"ok": {}, "refused": {}, "unavailable": 0, "errors_outside_faults": 0,
                      "wrong_reads": 0, "bytes_written": 0, "bytes_read": 0,
                      "unknown_after_failure": 0, "longest_op_s": 0.0, "longest_op": ""}
        self.log_file = open(self.prefix + ".log", "a", buffering=1)

    # bookkeeping
    def log(self, msg):
        self.log_file.write(f"{stamp()} {msg}\n")

    def fault_until(self):
        try:
            with open(os.path.join(self.state, "fault-until")) as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def save(self):
        write_json(self.prefix + ".ledger.json", {"files": self.ledger, "renames": self.renames})
        write_json(self.prefix + ".stats.json", self.stats)

    def count(self, kind, what):
        self.stats[kind][what] = self.stats[kind].get(what, 0) + 1

    def path(self, name):
        return os.path.join(self.dir, name)

    def new_name(self):
        self.next_id += 1
        return f"d{self.rng.randrange(4)}/f{self.next_id:06d}"

    def size(self, lo=KiB, hi=8 * MiB):
        # log-uniform: many small files, some up to several stripes
        return int(lo * (hi / lo) ** self.rng.random())

    def data(self, n):
        return self.rng.randbytes(n)

    def pick(self):
        return self.rng.choice(sorted(self.ledger)) if self.ledger else None

    # one operation
    def failed(self, op, name, e, started):
        """An operation got an error: counted as refused/unavailable during a fault."""
        during = started < self.fault_until() or now() < self.fault_until()
        what = f"{op} {name}: {e.__class__.__name__}: {e}"
        if during:
            if op in ("read", "list"):
                self.stats["unavailable"] += 1
            else:
                self.count("refused", op)
            self.log(f"during a fault: {what}")
        else:
            self.stats["errors_outside_faults"] += 1
            self.log(f"ERROR OUTSIDE FAULTS: {what}")

    def forget(self, name):
        """A change of `name` failed: its content is unknown from now on."""
        if self.ledger.pop(name, None) is not None:
            self.stats["unknown_after_failure"] += 1

    def wrong(self, name, what):
        self.stats["wrong_reads"] += 1
        self.log(f"WRONG READ {name}: {what}")
        print(f"{stamp()} WRONG READ {self.dir}/{name}: {what}", file=sys.stderr, flush=True)

    def verify(self, name, content):
        want = self.ledger[name]
        if len(content) != want["size"] or sha(content) != want["sha256"]:
            self.wrong(name, f"{len(content)} bytes, sha256 {sha(content)[:16]}; "
                             f"acknowledged {want['size']} bytes, sha256 {want['sha256'][:16]}")
            return False
        return True

    def op(self):
        full = len(self.ledger) >= self.max_files
        ops = ["create", "read", "patch", "append", "overwrite", "rename", "delete", "list"]
        weights = [2 if full else 30, 30, 10, 6, 6, 6, 30 if full else 6, 4]
        op = self.rng.choices(ops, weights)[0]
        if op != "create" and op != "list" and not self.ledger:
            op = "create"
        name = self.new_name() if op == "create" else self.pick()
        # everything random is drawn before the first call, so a failure does not change
        # the draws that follow (a replay with the same seed does the same operations)
        size = self.size()
        data = self.data(size) if op in ("create", "overwrite") else b""
        small = self.data(self.size(1, 256 * KiB)) if op in ("patch", "append") else b""
        pos = self.rng.random()
        to = self.new_name() if op == "rename" else ""
        listed = f"d{self.rng.randrange(4)}"
        with open(self.prefix + ".current", "w") as f:
            f.write(f"{now():.3f} {op} {name}\n")
        started = now()
        changing = op in ("create", "overwrite")  # the file's content is at stake
        try:
            if op == "create":
                write_at(self.path(name), os.O_CREAT | os.O_EXCL, 0, data)
                self.ledger[name] = {"size": size, "sha256": sha(data)}
                self.stats["bytes_written"] += size
            elif op == "overwrite":
                write_at(self.path(name), os.O_TRUNC, 0, data)
                self.ledger[name] = {"size": size, "sha256": sha(data)}
                self.stats["bytes_written"] += size
            elif op in ("read", "patch", "append"):
                content = read_file(self.path(name))
                self.stats["bytes_read"] += len(content)
                if not self.verify(name, content):
                    self.ledger.pop(name)  # reported; left alone (the final check sees it)
                    return
                if op == "patch":  # new bytes over a random range, maybe past the end
                    at = int(pos * len(content))
                    changing = True
                    write_at(self.path(name), 0, at, small)
                    content = content[:at] + small + content[at + len(small):]
                elif op == "append":
                    changing = True
                    write_at(self.path(name), os.O_APPEND, 0, small)
                    content += small
                if op != "read":
                    self.ledger[name] = {"size": len(content), "sha256": sha(content)}
                    self.stats["bytes_written"] += len(small)
            elif op == "rename":
                changing = True
                os.rename(self.path(name), self.path(to))
                self.ledger[to] = self.ledger.pop(name)
            elif op == "delete":
                changing = True
                os.unlink(self.path(name))
                self.ledger.pop(name)
            elif op == "list":
                there = set(os.listdir(os.path.join(self.dir, listed)))
                for n in sorted(self.ledger):
                    d, base = n.split("/")
                    if d == listed and base not in there:
                        self.wrong(n, f"not in the listing of {listed}/")
            self.count("ok", op)
        except OSError as e:
            if isinstance(e, FileNotFoundError) and op not in ("create", "list"):
                # nothing else touches an acknowledged file: it must be there
                self.wrong(name, f"{op}: {e}")
                self.ledger.pop(name, None)
                return
            self.failed(op, name, e, started)
            if op in ("create", "overwrite", "patch", "append") and changing:
                try:
                    st = os.stat(self.path(name))
                    self.log(f"  after the failure {name} has {st.st_size} bytes")
                except OSError as e2:
                    self.log(f"  after the failure: stat {name}: {e2}")
            if changing and op == "rename":  # under one of its names, whole
                self.renames.append({"from": name, "to": to, **self.ledger.pop(name)})
            elif changing and op == "delete":
                self.ledger.pop(name)
            elif changing:
                self.forget(name)
        finally:
            took = now() - started
            if took > self.stats["longest_op_s"]:
                self.stats["longest_op_s"] = round(took, 2)
                self.stats["longest_op"] = f"{op} {name} at {stamp()}"
            if took > 30:
                self.log(f"slow: {op} {name} took {took:.1f} s")
            self.save()

    def run(self):
        for d in range(4):
            os.makedirs(os.path.join(self.dir, f"d{d}"), exist_ok=True)
        stop = os.path.join(self.state, "stop")
        self.save()
        while not os.path.exists(stop):
            self.op()
        os.unlink(self.prefix + ".current")
        self.log("stopped")


def check(mnt, state, label, seconds):
    files = lost = wrong = unchecked = 0
    deadline = now() + float(seconds)
    found_renamed = 0
    t0 = now()
    for entry in sorted(os.listdir(state)):
        if not entry.endswith(".ledger.json"):
            continue
        worker = entry.split(".")[0]
        with open(os.path.join(state, entry)) as f:
            ledger = json.load(f)
        for name, want in sorted(ledger["files"].items()):
            if now() > deadline:
                unchecked += 1
                continue
            files += 1
            path = os.path.join(mnt, worker, name)
            try:
                got = read_file(path)
            except OSError as e:
                lost += 1
                print(f"LOST ({label}) {worker}/{name}: {e}", flush=True)
                continue
            if len(got) != want["size"] or sha(got) != want["sha256"]:
                lost += 1
                wrong += 1
                print(f"LOST ({label}) {worker}/{name}: {len(got)} bytes, sha256 "
                      f"{sha(got)[:16]}; acknowledged {want['size']} bytes, sha256 "
                      f"{want['sha256'][:16]}", flush=True)
        for r in ledger["renames"]:
            # a rename that failed: the file is under one of its names, whole
            if now() > deadline:
                unchecked += 1
                continue
            files += 1
            ok = False
            for name in (r["from"], r["to"]):
                try:
                    got = read_file(os.path.join(mnt, worker, name))
                except OSError:
                    continue
                if len(got) == r["size"] and sha(got) == r["sha256"]:
                    ok = True
                    found_renamed += name == r["to"]
            if not ok:
                lost += 1
                print(f"LOST ({label}) {worker}/{r['from']} (failed rename to {r['to']}): "
                      f"under neither name with its acknowledged content", flush=True)
    print(json.dumps({"label": label, "files": files, "lost": lost, "wrong_content": wrong,
                      "unchecked": unchecked,
                      "failed_renames_that_happened": found_renamed,
                      "seconds": round(now() - t0, 1)}), flush=True)


def main():
    if sys.argv[1] == "work":
        mnt, state, worker, seed, max_files = sys.argv[2:7]
        Worker(mnt, state, int(worker), seed, int(max_files)).run()
    elif sys.argv[1] == "check":
        check(*sys.argv[2:6])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
