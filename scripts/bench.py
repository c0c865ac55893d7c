#!/usr/bin/env python3
"""The whole benchmark comparison on one machine (run by scripts/bench.sh): `clavis bench`
against Clavis with audit on and off, the protocol-floor baseline server, and moto's server,
for Encrypt, Decrypt and GenerateDataKey; then CreateKey throughput, startup time and resident
memory with 100,000 keys. Prints every figure, the ratios, and each issue-#7 target as met or
missed. Only the standard library; the servers, `clavis bench` runs and constants are
tests/support/harness.py's. The clavis measured is $CLAVIS_BIN or target/release/clavis."""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from harness import AKID, REGION, ROOT, SECRET, Server, free_port, run_bench, wait_http  # noqa: E402  (tests/support/harness.py)

BASELINE = ROOT / "target" / "release" / "clavis-baseline"
BENCH_ENV = {"RUST_LOG": "warn"}
# The baseline checks signatures with the access key in its environment, as `clavis bench` signs.
OTHER_ENV = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION, **BENCH_ENV)
# Readiness is polled this often, so the startup figure is accurate to about this.
POLL_SECONDS = 0.02


class Servers:
    """The servers compared, side by side: Clavis with audit on and off (harness Servers), the
    baseline, and moto's server when it is installed."""

    def __init__(self, work, moto, baseline):
        self.work, self.clavis, self.others, self.endpoints = work, [], [], {}
        for name, data, args in [("audit-on", "on", []), ("audit-off", "off", ["--dangerous-no-audit"])]:
            server = Server(work / data, env=BENCH_ENV, args=args, poll=POLL_SECONDS).start()
            self.clavis.append(server)
            self.endpoints[name] = server.endpoint
        self.start_other("baseline", lambda port: [str(baseline), f"127.0.0.1:{port}"], health="/")
        if moto:
            self.start_other("moto", lambda port: [moto, "-H", "127.0.0.1", "-p", str(port)], health="/moto-api/")

    def start_other(self, name, argv, health):
        port = free_port()
        log = open(self.work / f"{name}.log", "wb")
        p = subprocess.Popen(argv(port), env=OTHER_ENV, stdout=log, stderr=log)
        self.others.append(p)
        wait_http(f"http://127.0.0.1:{port}{health}", p, timeout=30, poll=POLL_SECONDS, any_status=True, name=name)
        self.endpoints[name] = f"http://127.0.0.1:{port}"

    def stop(self):
        for p in self.others:
            p.terminate()
        for server in self.clavis:
            server.stop()
        for p in self.others:
            p.wait()


def bench(endpoint, op, connections, duration):
    return run_bench(endpoint, op, connections, duration, env=BENCH_ENV)


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--moto", default=shutil.which("moto_server") or str(ROOT / ".venv" / "bin" / "moto_server"))
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--baseline", default=str(BASELINE), help="the protocol-floor server (default: target/release/clavis-baseline)")
    args = ap.parse_args()
    moto = args.moto if Path(args.moto).exists() else None
    work = Path(tempfile.mkdtemp(prefix="clavis-bench-"))
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}; load generator on the same machine; "
          f"{args.connections} connections; {args.duration:g}s per run after a 1s warm-up; {args.rounds} rounds, servers alternated")
    servers = Servers(work, moto, args.baseline)
    results = {}
    try:
        names = list(servers.endpoints)
        print(f"\n{'operation':<18} {'server':<10} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8}  errors")
        for op in ["encrypt", "decrypt", "generate-data-key"]:
            for _ in range(args.rounds):
                for name in names:
                    r = bench(servers.endpoints[name], op, args.connections, args.duration)
                    results.setdefault((op, name), []).append(r)
                    print(
                        f"{op:<18} {name:<10} {r['requests_per_second']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
                        f"{r['max_us']:>8}  {r['errors'] or ''}",
                        flush=True,
                    )
        create = bench(servers.endpoints["audit-on"], "create-key", args.connections, args.duration)
    finally:
        servers.stop()

    def mean(op, name, field):
        return statistics.mean(r[field] for r in results[(op, name)])

    print("\nratios (means over rounds)")
    targets = []
    for op in ["encrypt", "decrypt", "generate-data-key"]:
        on, off, base = (mean(op, n, "requests_per_second") for n in ["audit-on", "audit-off", "baseline"])
        p99_on, p99_base = mean(op, "audit-on", "p99_us"), mean(op, "baseline", "p99_us")
        line = (f"{op:<18} audit-on/baseline {on / base:.2f}  audit-off/baseline {off / base:.2f}  "
                f"audit-on/audit-off {on / off:.2f}  p99 audit-on/baseline {p99_on / p99_base:.2f}")
        if moto:
            line += f"  audit-on/moto {on / mean(op, 'moto', 'requests_per_second'):.0f}x"
        print(line)
        targets.append((f"{op}: audit on >= 85% of baseline req/s", on / base >= 0.85, f"{on / base:.0%}"))
        targets.append((f"{op}: p99 audit on <= 1.5x baseline", p99_on / p99_base <= 1.5, f"{p99_on / p99_base:.2f}x"))

    print(f"\ncreate-key (audit on): {create['requests_per_second']:.0f} keys/s, p50 {create['p50_us']} µs, p99 {create['p99_us']} µs")
    targets.append(("CreateKey >= 1,000 durable keys/s", create["requests_per_second"] >= 1000, f"{create['requests_per_second']:.0f}/s"))

    # Resident memory with N keys: create them, then measure after a restart and a short load.
    mem = Server(work / "mem", env=BENCH_ENV, poll=POLL_SECONDS).start()
    count = 0
    while count < args.keys:
        bench(mem.endpoint, "create-key", args.connections, 10)
        count = sqlite3.connect(f"file:{mem.data_dir / 'clavis.db'}?mode=ro", uri=True).execute("SELECT COUNT(*) FROM keys").fetchone()[0]
    rss_after_create = rss_kib(mem.proc.pid)
    mem.stop()

    # Startup on an initialised data directory with those keys (process spawn to /healthz).
    starts = []
    for _ in range(10):
        t = time.time()
        mem.start()
        starts.append((time.time() - t) * 1000)
        mem.stop()
    mem.start()
    rss_idle = rss_kib(mem.proc.pid)
    bench(mem.endpoint, "encrypt", args.connections, 5)
    rss_loaded = rss_kib(mem.proc.pid)
    mem.stop()
    print(f"\n{count} keys: RSS right after creating them {rss_after_create / 1024:.0f} MiB; after restart {rss_idle / 1024:.0f} MiB idle, "
          f"{rss_loaded / 1024:.0f} MiB after 5 s of Encrypt")
    print(f"startup to /healthz with {count} keys: median {statistics.median(starts):.1f} ms "
          f"(min {min(starts):.1f}, max {max(starts):.1f}), process spawn included")
    targets.append(("startup < 200 ms", statistics.median(starts) < 200, f"{statistics.median(starts):.0f} ms"))

    print("\ntargets")
    for name, ok, value in targets:
        print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
