# A benchmark process for the Python locks (shmlock's seeds and their peers): the run_perf
# cycle of child.mjs, in Python, with the same counter-file protocol, so the Python rows of the
# run_perf table measure the same work as the Node ones.
#
# Run by run.mjs with the benchmark's virtual environment (setup.mjs) as
#   python py_child.py '{"id": ..., "kind": ..., "key": ..., "counterFile": ..., "scratch": ...}'
# It speaks JSON lines: it prints {"type": "ready"} once its lock is open, then reads
#   {"type": "go", "cycles": N}  runs the cycle N times: start = now; acquire; read the u64
#                                counter at offset 0 of the shared file; write counter + 1;
#                                release; sample = now - start (ms). Prints
#                                {"type": "done", "samples": [...]}.
#   {"type": "exit"}             exits.
#
# Each lock is called the fastest way it allows (the same rule as for the Node peers):
#   portalocker  lock(f, LOCK_EX | LOCK_NB), and if that is refused lock(f, LOCK_EX): a kernel
#                flock that sleeps until the lock is free, no polling; unlock(f). One open
#                file for the whole run.
#   shmlock      ShmLock(name, poll_interval=POLL).acquire(), release(). It can only poll (its
#                acquire tries, then sleeps poll_interval, then tries again); its acquire tries
#                first by itself. The shared memory is kept out of Python's resource tracker,
#                as shmlock's own run_perf does, for speed.
#   fasteners    InterProcessLock(path).acquire(delay=POLL, max_delay=POLL), release(). Polls a
#                non-blocking lockf; tries first by itself.
#   filelock     FileLock(path).acquire(poll_interval=POLL), release(). Polls a non-blocking
#                flock; tries first by itself.
# POLL is 1 ms for every polling lock: the defaults are 10 ms (fasteners, growing to 100 ms) and
# 50 ms (shmlock, filelock), which would measure the poll interval rather than the lock; 1 ms is
# the best case the lockfile row of the Node table is given too. Shorter polls turn into busy
# waiting that takes the CPU from the holder when there are more processes than cores.
import json
import os
import struct
import sys
import time

POLL = 0.001

args = json.loads(sys.argv[1])
kind = args["kind"]
key = args["key"]
files = os.path.join(args["scratch"], "py-files")
os.makedirs(files, exist_ok=True)
path = os.path.join(files, key)


def open_lock():
    """(acquire, release) for this process's lock, opened once."""
    if kind == "portalocker":
        import portalocker

        fh = open(path, "a+")
        ex, nb = portalocker.LOCK_EX, portalocker.LOCK_NB

        def acquire():
            try:
                portalocker.lock(fh, ex | nb)
            except portalocker.LockException:
                portalocker.lock(fh, ex)

        return acquire, lambda: portalocker.unlock(fh)
    if kind == "shmlock":
        import shmlock

        if sys.version_info < (3, 13):
            shmlock.remove_shm_from_resource_tracker("", print_warning=False)
        # Shared memory names are global to the machine: the scratch directory's name keeps
        # runs apart.
        name = f"{os.path.basename(args['scratch'])}-{key}"
        lock = shmlock.ShmLock(name, poll_interval=POLL, track=False if sys.version_info >= (3, 13) else None)
        return lock.acquire, lock.release
    if kind == "fasteners":
        import fasteners

        lock = fasteners.InterProcessLock(path)
        return (lambda: lock.acquire(delay=POLL, max_delay=POLL)), lock.release
    if kind == "filelock":
        import filelock

        lock = filelock.FileLock(path)
        return (lambda: lock.acquire(poll_interval=POLL)), lock.release
    raise SystemExit(f"py_child: no lock kind {kind!r}")


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def cycles(n, acquire, release, fd):
    samples = []
    now = time.perf_counter
    pack, unpack = struct.Struct("<Q").pack, struct.Struct("<Q").unpack
    pread, pwrite = os.pread, os.pwrite
    for _ in range(n):
        t0 = now()
        acquire()
        (value,) = unpack(pread(fd, 8, 0))
        pwrite(fd, pack(value + 1), 0)
        release()
        samples.append((now() - t0) * 1000)
    return samples


def main():
    fd = os.open(args["counterFile"], os.O_RDWR)
    acquire, release = open_lock()
    send({"type": "ready"})
    for line in sys.stdin:
        m = json.loads(line)
        if m["type"] == "go":
            send({"type": "done", "samples": cycles(m["cycles"], acquire, release, fd)})
        elif m["type"] == "exit":
            return


try:
    main()
except Exception as error:  # a failure is a result the parent reports, not a silent exit
    send({"type": "failed", "message": f"{type(error).__name__}: {error}"})
    sys.exit(1)
