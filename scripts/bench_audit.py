#!/usr/bin/env python3
"""Audit on against audit off, servers alternated round by round on this machine: Encrypt
requests per second (`clavis bench`) and the server's CPU time per request (user + system
from /proc/PID/stat, over the whole bench run including its warm-up, so comparable between
servers rather than exact). Linux only; standard library only.

    python3 scripts/bench_audit.py [--connections 32] [--duration 4] [--rounds 3]
        [--binary target/release/clavis] [--also NAME=PATH ...]

`--also` adds another build of clavis (audit on), e.g. an older commit's binary, to compare.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from harness import CLAVIS, NO_QUOTA, Server, cpu_ticks, run_bench  # noqa: E402  (the suite's server harness; standard library only)


def run_one(binary: str, audit: bool, connections: int, duration: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as work:
        # The server's log level is the environment's (the binary's default, info, when unset).
        env = {"RUST_BACKTRACE": "0", "RUST_LOG": os.environ.get("RUST_LOG"), **NO_QUOTA}
        server = Server(Path(work) / "data", env=env, args=[] if audit else ["--dangerous-no-audit"], binary=binary, poll=0.1)
        try:
            server.start()
            t0 = cpu_ticks(server.proc.pid)
            r = run_bench(server.endpoint, "encrypt", connections, duration, binary=binary)
            ticks = cpu_ticks(server.proc.pid) - t0
            if r.get("errors"):
                sys.exit(f"errors during the bench: {r['errors']}")
            rate = r["requests_per_second"]
            cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / r["requests"]
            return rate, cpu_us
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=str(CLAVIS), help="the clavis to measure (default: $CLAVIS_BIN or target/release/clavis)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=PATH", help="another clavis binary, audit on")
    args = ap.parse_args()
    servers = [("audit on", args.binary, True)]
    servers += [(name, path, True) for name, path in (a.split("=", 1) for a in args.also)]
    servers += [("audit off", args.binary, False)]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in servers}
    for _ in range(args.rounds):
        for name, binary, audit in servers:
            results[name].append(run_one(binary, audit, args.connections, args.duration))
    off = statistics.median(r for r, _ in results["audit off"])
    print(f"Encrypt, {args.connections} connections, {args.duration:g} s, {args.rounds} rounds alternated")
    print(f"{'server':<18} {'req/s per round':<34} {'median':>8} {'/ off':>6} {'server CPU us/req':>18}")
    for name, _, _ in servers:
        rates = [r for r, _ in results[name]]
        med = statistics.median(rates)
        cpu = statistics.median(c for _, c in results[name])
        print(f"{name:<18} {' / '.join(f'{r:,.0f}' for r in rates):<34} {med:>8,.0f} {med / off:>6.2f} {cpu:>18.1f}")


if __name__ == "__main__":
    main()
