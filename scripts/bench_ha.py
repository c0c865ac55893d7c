#!/usr/bin/env python3
"""Benchmarks of the storage backends and of several nodes (issue #9), on one machine:

1. requests/s of one node on SQLite and one node on PostgreSQL (Encrypt, GenerateDataKey,
   CreateKey), alternating rounds;
2. requests/s of three nodes on one PostgreSQL database together (one `clavis bench` per node,
   run at the same time, summed);
3. propagation: how long after DisableKey returns on node A node B refuses the key (polled
   every 2 ms), over several trials.

Starts its own throwaway PostgreSQL cluster with scripts/pg-cluster.sh, and its nodes, with
tests/support/harness.py. Audit is on for every node (the default). The standard library, and
boto3 for the propagation trials. The clavis measured is $CLAVIS_BIN or target/release/clavis.

    .venv/bin/python scripts/bench_ha.py [--duration S] [--connections N] [--rounds R] [--trials T]
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from harness import NO_QUOTA, Postgres, run_bench, start_node  # noqa: E402  (the suite's server harness)

BENCH_ENV = {"RUST_LOG": "warn", **NO_QUOTA}


def node(work, name, url=None, master_from=None):
    """A started node in work/<name>, ready (/readyz) when returned."""
    return start_node(work / name, url, master_from=master_from, env=BENCH_ENV, ready_path="/readyz")


def bench(server, op, connections, duration):
    return run_bench(server.endpoint, op, connections, duration, env=BENCH_ENV)


def propagation(a_node, b_node, trials):
    from botocore.exceptions import ClientError

    a, b = a_node.client(), b_node.client()
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
    pg = Postgres().start()
    nodes = []
    try:
        nodes.append(node(work, "sqlite"))
        nodes.append(node(work, "pg-a", pg.url))
        sqlite, pg_a = nodes
        results = {}
        for r in range(args.rounds):
            for op in ["encrypt", "generate-data-key", "create-key"]:
                for name, server in [("sqlite", sqlite), ("postgres", pg_a)]:
                    res = bench(server, op, args.connections, args.duration)
                    results.setdefault((name, op), []).append(res["requests_per_second"])
                    print(
                        f"round {r + 1} {name:8} {op:18} {res['requests_per_second']:9.0f} req/s  "
                        f"p50 {res['p50_us']} us  p99 {res['p99_us']} us  errors {res['errors']}",
                        flush=True,
                    )
        # Three nodes on one database, loaded at the same time.
        three = [pg_a]
        for name in ["pg-b", "pg-c"]:
            three.append(node(work, name, pg.url, master_from=pg_a.data_dir))
            nodes.append(three[-1])
        for op in ["encrypt", "create-key"]:
            for r in range(args.rounds):
                out = [None] * 3
                def run(i):
                    out[i] = bench(three[i], op, max(1, args.connections // 3), args.duration)
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
        times = propagation(three[0], three[1], args.trials)
        print()
        print("| setup | operation | req/s (median of rounds) |")
        print("|---|---|---|")
        for (name, op), v in results.items():
            print(f"| {name} | {op} | {statistics.median(v):.0f} |")
        print()
        print(f"propagation A->B of DisableKey over {len(times)} trials: min {min(times):.0f} ms, "
              f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
    finally:
        for n in nodes:
            n.stop()
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
