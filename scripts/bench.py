#!/usr/bin/env python3
"""The whole benchmark comparison on one machine (run by scripts/bench.sh): `clavis bench`
against Clavis with audit on and off, the protocol-floor baseline server, and moto's server,
for Encrypt, Decrypt and GenerateDataKey; then CreateKey throughput, startup time and resident
memory with 100,000 keys. Prints every figure, the ratios, and each issue-#7 target as met or
missed. Only the standard library."""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAVIS = ROOT / "target" / "release" / "clavis"
BASELINE = ROOT / "target" / "release" / "clavis-baseline"
AKID, SECRET = "AKIABENCHMARKADMIN00", "bench-secret-0123456789-abcdefghij"
ENV = dict(os.environ, CLAVIS_ROOT_ACCESS_KEY_ID=AKID, CLAVIS_ROOT_SECRET_ACCESS_KEY=SECRET, AWS_ACCESS_KEY_ID=AKID,
           AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1", RUST_LOG="warn")


def wait_ready(url, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer")


class Servers:
    def __init__(self, work, moto):
        self.work, self.procs, self.ports = work, {}, {}
        self.start("audit-on", 18801, [str(CLAVIS), "serve", "--data-dir", str(work / "on"), "--listen", "127.0.0.1:18801"])
        self.start(
            "audit-off",
            18802,
            [str(CLAVIS), "serve", "--data-dir", str(work / "off"), "--listen", "127.0.0.1:18802", "--dangerous-no-audit"],
        )
        self.start("baseline", 18803, [str(BASELINE), "127.0.0.1:18803"], health="/")
        if moto:
            self.start("moto", 18804, [moto, "-H", "127.0.0.1", "-p", "18804"], health="/moto-api/")

    def start(self, name, port, argv, health="/healthz"):
        log = open(self.work / f"{name}.log", "wb")
        p = subprocess.Popen(argv, env=ENV, stdout=log, stderr=log)
        wait_ready(f"http://127.0.0.1:{port}{health}", p)
        self.procs[name], self.ports[name] = p, port

    def stop(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            p.wait()


def bench(port, op, connections, duration):
    out = subprocess.run([str(CLAVIS), "bench", "--endpoint-url", f"http://127.0.0.1:{port}", "--op", op, "--connections", str(connections),
                          "--duration", str(duration), "--json"], env=ENV, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["results"][0]


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
    args = ap.parse_args()
    moto = args.moto if Path(args.moto).exists() else None
    work = Path(tempfile.mkdtemp(prefix="clavis-bench-"))
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}; load generator on the same machine; "
          f"{args.connections} connections; {args.duration:g}s per run after a 1s warm-up; {args.rounds} rounds, servers alternated")
    servers = Servers(work, moto)
    results = {}
    try:
        names = list(servers.ports)
        print(f"\n{'operation':<18} {'server':<10} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8}  errors")
        for op in ["encrypt", "decrypt", "generate-data-key"]:
            for _ in range(args.rounds):
                for name in names:
                    r = bench(servers.ports[name], op, args.connections, args.duration)
                    results.setdefault((op, name), []).append(r)
                    print(
                        f"{op:<18} {name:<10} {r['requests_per_second']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
                        f"{r['max_us']:>8}  {r['errors'] or ''}",
                        flush=True,
                    )
        create = bench(servers.ports["audit-on"], "create-key", args.connections, args.duration)
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
    mem_dir = work / "mem"
    p = subprocess.Popen(
        [str(CLAVIS), "serve", "--data-dir", str(mem_dir), "--listen", "127.0.0.1:18805"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready("http://127.0.0.1:18805/healthz", p)
    count = 0
    while count < args.keys:
        bench(18805, "create-key", args.connections, 10)
        count = sqlite3.connect(f"file:{mem_dir / 'clavis.db'}?mode=ro", uri=True).execute("SELECT COUNT(*) FROM keys").fetchone()[0]
    rss_after_create = rss_kib(p.pid)
    p.terminate()
    p.wait()

    # Startup on an initialised data directory with those keys.
    starts = []
    for _ in range(10):
        t = time.time()
        p = subprocess.Popen(
            [str(CLAVIS), "serve", "--data-dir", str(mem_dir), "--listen", "127.0.0.1:18805"],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_ready("http://127.0.0.1:18805/healthz", p)
        starts.append((time.time() - t) * 1000)
        p.terminate()
        p.wait()
    p = subprocess.Popen(
        [str(CLAVIS), "serve", "--data-dir", str(mem_dir), "--listen", "127.0.0.1:18805"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready("http://127.0.0.1:18805/healthz", p)
    rss_idle = rss_kib(p.pid)
    bench(18805, "encrypt", args.connections, 5)
    rss_loaded = rss_kib(p.pid)
    p.terminate()
    p.wait()
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
