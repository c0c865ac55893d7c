#!/usr/bin/env python3
"""Benchmarks of the storage backends and of several nodes (issue #9), on one machine:

1. requests/s of one node on SQLite and one node on PostgreSQL (Encrypt, GenerateDataKey,
   CreateKey), alternating rounds;
2. requests/s of three nodes on one PostgreSQL database together (one `clavis bench` per node,
   run at the same time, summed);
3. propagation: how long after DisableKey returns on node A node B refuses the key (polled
   every 2 ms), over several trials.

Starts its own throwaway PostgreSQL cluster with scripts/pg-cluster.sh. Audit is on for every
node (the default). Only the standard library.

    .venv/bin/python scripts/bench_ha.py [--duration S] [--connections N] [--rounds R] [--trials T]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAVIS = ROOT / "target" / "release" / "clavis"
PG = ROOT / "scripts" / "pg-cluster.sh"
AKID, SECRET = "AKIABENCHMARKADMIN00", "bench-secret-0123456789-abcdefghij"
ENV = dict(os.environ, CLAVIS_ROOT_ACCESS_KEY_ID=AKID, CLAVIS_ROOT_SECRET_ACCESS_KEY=SECRET, AWS_ACCESS_KEY_ID=AKID,
           AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1", RUST_LOG="warn")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(work, name, port, url=None, master_from=None):
    data = work / name
    if master_from is not None:
        data.mkdir(mode=0o700)
        shutil.copy2(master_from / "master.key", data / "master.key")
    argv = [str(CLAVIS), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"]
    if url:
        argv += ["--database-url", url]
    p = subprocess.Popen(argv, env=ENV, stdout=open(work / f"{name}.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return p, data
        except (urllib.error.URLError, OSError):
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited: {(work / f'{name}.log').read_text()}")
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not become ready")


def bench(port, op, connections, duration):
    out = subprocess.run([str(CLAVIS), "bench", "--endpoint-url", f"http://127.0.0.1:{port}", "--op", op, "--connections", str(connections),
                          "--duration", str(duration), "--json"], env=ENV, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["results"][0]


def propagation(port_a, port_b, trials):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
    def mk(port):
        return boto3.client("kms", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id=AKID,
                            aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 1}))
    a, b = mk(port_a), mk(port_b)
    times = []
    for _ in range(trials):
        key = a.create_key()["KeyMetadata"]["KeyId"]
        b.encrypt(KeyId=key, Plaintext=b"warm")  # B caches the key record
        a.disable_key(KeyId=key)
        t0 = time.perf_counter()
        while True:
            try:
                b.encrypt(KeyId=key, Plaintext=b"x")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "DisabledException", e.response
                times.append((time.perf_counter() - t0) * 1000)
                break
            time.sleep(0.002)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clavis-bench-ha-"))
    work.chmod(0o755)
    pg_port = free_port()
    url = subprocess.run([str(PG), "start", str(work / "pg"), str(pg_port)], capture_output=True, text=True, check=True).stdout.strip()
    procs = []
    try:
        sq_port, pg1_port = free_port(), free_port()
        p, _ = start_node(work, "sqlite", sq_port)
        procs.append(p)
        p, node_a = start_node(work, "pg-a", pg1_port, url)
        procs.append(p)
        results = {}
        for r in range(args.rounds):
            for op in ["encrypt", "generate-data-key", "create-key"]:
                for name, port in [("sqlite", sq_port), ("postgres", pg1_port)]:
                    res = bench(port, op, args.connections, args.duration)
                    results.setdefault((name, op), []).append(res["requests_per_second"])
                    print(
                        f"round {r + 1} {name:8} {op:18} {res['requests_per_second']:9.0f} req/s  "
                        f"p50 {res['p50_us']} us  p99 {res['p99_us']} us  errors {res['errors']}",
                        flush=True,
                    )
        # Three nodes on one database, loaded at the same time.
        ports = [pg1_port, free_port(), free_port()]
        for name, port in [("pg-b", ports[1]), ("pg-c", ports[2])]:
            p, _ = start_node(work, name, port, url, master_from=node_a)
            procs.append(p)
        for op in ["encrypt", "create-key"]:
            for r in range(args.rounds):
                out = [None] * 3
                def run(i):
                    out[i] = bench(ports[i], op, max(1, args.connections // 3), args.duration)
                ts = [threading.Thread(target=run, args=(i,)) for i in range(3)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                total = sum(o["requests_per_second"] for o in out)
                results.setdefault(("3 nodes", op), []).append(total)
                each = ", ".join(str(round(o["requests_per_second"])) for o in out)
                errors = sum(sum(o["errors"].values()) for o in out)
                print(f"round {r + 1} 3 nodes  {op:18} {total:9.0f} req/s  ({each}; errors {errors})", flush=True)
        times = propagation(ports[0], ports[1], args.trials)
        print()
        print("| setup | operation | req/s (median of rounds) |")
        print("|---|---|---|")
        for (name, op), v in results.items():
            print(f"| {name} | {op} | {statistics.median(v):.0f} |")
        print()
        print(f"propagation A->B of DisableKey over {len(times)} trials: min {min(times):.0f} ms, "
              f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        subprocess.run([str(PG), "stop", str(work / "pg")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
