#!/usr/bin/env python3
"""What one durable write costs on this machine: wall time and CPU time (user + system, as
getrusage reports them for this process) per `pwrite` + `fdatasync`, the audit log's commit.

The audit log's throughput with audit on is bounded by this CPU cost divided by the batch size
(see BENCHMARKS.md, "Audit on vs audit off"). Standard library only.

    python3 scripts/fsync_cost.py [--dir DIR] [--bytes N] [--count N]
"""

import argparse
import os
import resource
import tempfile
import time


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fd: int, size: int, count: int, start: int) -> tuple[float, float, int]:
    """Writes `count` records of `size` bytes from offset `start`, each made durable."""
    buf = b"x" * size
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    c0, t0 = cpu_seconds(), time.perf_counter()
    off = start
    for _ in range(count):
        os.pwrite(fd, buf, off)
        os.fdatasync(fd)
        off += size
    c1, t1 = cpu_seconds(), time.perf_counter()
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches
    return (t1 - t0) / count * 1e6, (c1 - c0) / count * 1e6, switches // count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temporary directory)")
    ap.add_argument("--bytes", type=int, default=8 * 1024, help="bytes per write (about one batch of 8 records)")
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = os.path.join(d, "probe")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            total = args.bytes * args.count
            wall, cpu, sw = measure(fd, args.bytes, args.count, 0)
            print(f"append (file grows):      {wall:7.1f} us wall  {cpu:6.1f} us CPU  {sw} sleeps per durable write")
            # The audit log's case: overwriting zeros already written and synced.
            os.pwrite(fd, b"\0" * total, total)
            os.fsync(fd)
            wall, cpu, sw = measure(fd, args.bytes, args.count, total)
            print(f"overwrite (preallocated): {wall:7.1f} us wall  {cpu:6.1f} us CPU  {sw} sleeps per durable write")
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
