#!/usr/bin/env python3
"""RSA wrapping-key generation against everyone else's latency (issue 14, item 8): ListKeys
latency from one client while `--generators` clients call GetParametersForImport with
RSA_4096 in a loop, and without them. Each binary gets its own server (SQLite,
`--dangerous-no-audit`), measured one after the other.

    .venv/bin/python scripts/bench_import_load.py [--binary target/release/clavis]
        [--also NAME=PATH ...] [--generators 4] [--seconds 8]

A generator that hits the per-key cap on outstanding tokens moves on to a fresh key, so the
load is generation, not refusals. Needs boto3 (tests/e2e/requirements.txt).
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from harness import CLAVIS, NO_QUOTA, Server  # noqa: E402  (the suite's server harness)


def listkeys_latency(kms, seconds: float) -> list[float]:
    times = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        t0 = time.perf_counter()
        kms.list_keys(Limit=10)
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)


def generator(server: Server, stop: threading.Event, made: list) -> None:
    kms = server.client()
    kid = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    while not stop.is_set():
        try:
            kms.get_parameters_for_import(KeyId=kid, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_4096")
            made.append(1)
        except ClientError as e:
            if e.response["Error"]["Code"] != "LimitExceededException":
                raise
            kid = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]


def fig(times: list[float]) -> str:
    return (
        f"median {statistics.median(times):7.2f} ms  p90 {times[int(len(times) * 0.9)]:8.2f} ms  max {times[-1]:8.2f} ms  (n={len(times)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(CLAVIS), help="the clavis to measure (default: $CLAVIS_BIN or target/release/clavis)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--generators", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8)
    args = ap.parse_args()
    binaries = [("this build", args.binary)] + [tuple(a.split("=", 1)) for a in args.also]
    with tempfile.TemporaryDirectory(prefix="clavis-bench-import-") as work:
        for name, binary in binaries:
            env = {"RUST_LOG": "warn", **NO_QUOTA}
            server = Server(Path(work) / name.replace(" ", "_"), env=env, args=["--dangerous-no-audit"], binary=binary)
            server.start()
            try:
                kms = server.client()
                kms.create_key()
                idle = listkeys_latency(kms, args.seconds / 2)
                stop, made = threading.Event(), []
                threads = [threading.Thread(target=generator, args=(server, stop, made)) for _ in range(args.generators)]
                for t in threads:
                    t.start()
                time.sleep(1)  # every generator is busy
                loaded = listkeys_latency(kms, args.seconds)
                stop.set()
                for t in threads:
                    t.join()
                print(f"{name}: ListKeys idle:                {fig(idle)}")
                print(f"{name}: ListKeys with {args.generators} RSA_4096 gens: {fig(loaded)}; {len(made)} wrapping keys made")
            finally:
                server.stop()


if __name__ == "__main__":
    main()
