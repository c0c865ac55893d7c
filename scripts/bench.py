#!/usr/bin/env python3
"""The whole benchmark comparison on one machine (run by scripts/bench.sh): `clavis bench`
against the protocol-floor baseline server, Clavis without audit, with `write` and with `fsync`
audit durability, and moto's server, for Encrypt, Decrypt and GenerateDataKey: req/s, p50/p99
and server CPU per request; then Encrypt at 512 connections, CreateKey throughput, startup time
and resident memory with 100,000 keys. Prints every figure, the ratios, and each issue-#19
target as met or missed. Only the standard library; the servers, `clavis bench` runs and constants are
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
from harness import AKID, NO_QUOTA, REGION, ROOT, SECRET, Server, cpu_ticks, free_port, run_bench, wait_http  # noqa: E402  (tests/support/harness.py)

BASELINE = ROOT / "target" / "release" / "clavis-baseline"
BENCH_ENV = {"RUST_LOG": "warn", **NO_QUOTA}
# The baseline checks signatures with the access key in its environment, as `clavis bench` signs.
OTHER_ENV = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION, **BENCH_ENV)
# Readiness is polled this often, so the startup figure is accurate to about this.
POLL_SECONDS = 0.02


# The Clavis servers compared: name, `serve` arguments.
CLAVIS_SERVERS = [
    ("audit-off", ["--dangerous-no-audit"]),
    ("write", ["--audit-durability", "write"]),
    ("fsync", []),
]
OPS = ["encrypt", "decrypt", "generate-data-key"]


class Servers:
    """The servers compared, side by side: the baseline, Clavis without audit and with each
    audit durability (harness Servers), and moto's server when it is installed."""

    def __init__(self, work, moto, baseline):
        self.work, self.clavis, self.others, self.endpoints, self.pids = work, [], [], {}, {}
        self.start_other("baseline", lambda port: [str(baseline), f"127.0.0.1:{port}"], health="/")
        for name, args in CLAVIS_SERVERS:
            server = Server(work / name, env=BENCH_ENV, args=args, poll=POLL_SECONDS).start()
            self.clavis.append(server)
            self.endpoints[name], self.pids[name] = server.endpoint, server.proc.pid
        if moto:
            self.start_other("moto", lambda port: [moto, "-H", "127.0.0.1", "-p", str(port)], health="/moto-api/")

    def start_other(self, name, argv, health):
        port = free_port()
        log = open(self.work / f"{name}.log", "wb")
        p = subprocess.Popen(argv(port), env=OTHER_ENV, stdout=log, stderr=log)
        self.others.append(p)
        wait_http(f"http://127.0.0.1:{port}{health}", p, timeout=30, poll=POLL_SECONDS, any_status=True, name=name)
        self.endpoints[name], self.pids[name] = f"http://127.0.0.1:{port}", p.pid

    def stop(self):
        for p in self.others:
            p.terminate()
        for server in self.clavis:
            server.stop()
        for p in self.others:
            p.wait()


def bench(endpoint, op, connections, duration, pid=None):
    """One `clavis bench` run; with `pid`, adds the server's CPU time per request answered
    (user + system from /proc, over the run including its 1 s warm-up: comparable between
    servers rather than exact)."""
    t0 = cpu_ticks(pid) if pid else 0
    r = run_bench(endpoint, op, connections, duration, env=BENCH_ENV)
    if pid:
        r["cpu_us"] = (cpu_ticks(pid) - t0) / os.sysconf("SC_CLK_TCK") * 1e6 / max(r["requests"], 1)
    return r


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", default=",".join(OPS), help="comma-separated operations (default: all three)")
    ap.add_argument("--many-connections", type=int, default=512, help="connections of the last run (0 to skip)")
    ap.add_argument("--quick", action="store_true", help="only the comparison: no moto, CreateKey, memory or startup runs")
    ap.add_argument("--moto", default=shutil.which("moto_server") or str(ROOT / ".venv" / "bin" / "moto_server"))
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--baseline", default=str(BASELINE), help="the protocol-floor server (default: target/release/clavis-baseline)")
    args = ap.parse_args()
    ops = args.ops.split(",")
    moto = args.moto if Path(args.moto).exists() and not args.quick else None
    work = Path(tempfile.mkdtemp(prefix="clavis-bench-"))
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}; load generator on the same machine; "
          f"{args.connections} connections; {args.duration:g}s per run after a 1s warm-up; {args.rounds} rounds, servers alternated")
    servers = Servers(work, moto, args.baseline)
    results = {}
    many = {}
    try:
        names = list(servers.endpoints)
        print(f"\n{'operation':<18} {'server':<10} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8} {'CPU µs/req':>10}  errors")
        for op in ops:
            for _ in range(args.rounds):
                for name in names:
                    r = bench(servers.endpoints[name], op, args.connections, args.duration, servers.pids[name])
                    results.setdefault((op, name), []).append(r)
                    print(
                        f"{op:<18} {name:<10} {r['requests_per_second']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
                        f"{r['max_us']:>8} {r['cpu_us']:>10.1f}  {r['errors'] or ''}",
                        flush=True,
                    )
        if args.many_connections:
            print(f"\nencrypt at {args.many_connections} connections, one run each")
            for name in names:
                if name == "moto":
                    continue
                r = many[name] = bench(servers.endpoints[name], "encrypt", args.many_connections, args.duration, servers.pids[name])
                print(f"{'encrypt':<18} {name:<10} {r['requests_per_second']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
                      f"{r['max_us']:>8} {r['cpu_us']:>10.1f}  {r['errors'] or ''}", flush=True)
        create = None if args.quick else bench(servers.endpoints["fsync"], "create-key", args.connections, args.duration)
    finally:
        servers.stop()

    def mean(op, name, field):
        return statistics.mean(r[field] for r in results[(op, name)])

    print("\nratios (means over rounds; CPU is server CPU per request)")
    targets = []
    for op in ops:
        rate = {n: mean(op, n, "requests_per_second") for n in names}
        cpu = {n: mean(op, n, "cpu_us") for n in names}
        p99 = {n: mean(op, n, "p99_us") for n in names}
        base = "baseline"
        line = (f"{op:<18} CPU off/base {cpu['audit-off'] / cpu[base]:.2f}  fsync/base {cpu['fsync'] / cpu[base]:.2f}  "
                f"write/base {cpu['write'] / cpu[base]:.2f} | req/s off/base {rate['audit-off'] / rate[base]:.2f}  "
                f"fsync/base {rate['fsync'] / rate[base]:.2f}  write/off {rate['write'] / rate['audit-off']:.2f} | "
                f"p99 off/base {p99['audit-off'] / p99[base]:.2f}  fsync/base {p99['fsync'] / p99[base]:.2f}")
        if moto:
            line += f" | fsync/moto {rate['fsync'] / rate['moto']:.0f}x"
        print(line)
        for what, value, limit, below in [
            ("CPU per request, audit off <= 1.3x baseline", cpu["audit-off"] / cpu[base], 1.3, True),
            ("CPU per request, fsync audit <= 2.0x baseline", cpu["fsync"] / cpu[base], 2.0, True),
            ("req/s, fsync audit >= 0.55x baseline", rate["fsync"] / rate[base], 0.55, False),
            ("req/s, write audit >= 0.9x audit off", rate["write"] / rate["audit-off"], 0.9, False),
            ("p99, audit off <= 1.5x baseline", p99["audit-off"] / p99[base], 1.5, True),
            ("p99, fsync audit <= 2x baseline", p99["fsync"] / p99[base], 2.0, True),
        ]:
            targets.append((f"{op}: {what}", value <= limit if below else value >= limit, f"{value:.2f}x"))
    for name, r in many.items():
        label = f"{args.many_connections} connections, {name}: no errors (p99 {r['p99_us']} µs)"
        targets.append((label, not r["errors"], r["errors"] or "none"))

    if create is None:
        print("\ntargets")
        for name, ok, value in targets:
            print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")
        shutil.rmtree(work, ignore_errors=True)
        return
    print(f"\ncreate-key (fsync audit): {create['requests_per_second']:.0f} keys/s, p50 {create['p50_us']} µs, p99 {create['p99_us']} µs")
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
