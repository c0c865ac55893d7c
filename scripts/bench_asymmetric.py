#!/usr/bin/env python3
"""Operations beside a reference operation, on one server, in one run: requests per second and
p99 of `clavis bench`. `--cases asymmetric` (#17, the default): Encrypt (AES-256-GCM), Sign and
Verify with ECDSA P-256, RSA-2048 PSS and ML-DSA-65, and GenerateMac with HMAC-256, each as a
ratio to Encrypt. `--cases secrets` (#18): GetSecretValue as a ratio to Decrypt. Operations
alternate round by round, so a noisy machine affects them alike; the figure per operation is the
median of the rounds. Standard library only (the suite's harness).

    python3 scripts/bench_asymmetric.py [--cases asymmetric|secrets] [--connections 32]
        [--duration 4] [--rounds 3] [--binary target/release/clavis]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from harness import AKID, CLAVIS, NO_QUOTA, REGION, SECRET, Server, run_clavis  # noqa: E402  (the suite's server harness)

SECRETS = [
    ("Decrypt (AES-256-GCM)", "decrypt", None),
    ("GetSecretValue", "get-secret-value", None),
]

ASYMMETRIC = [
    ("Encrypt (AES-256-GCM)", "encrypt", None),
    ("GenerateMac HMAC-256", "generate-mac", None),
    ("Sign ECDSA P-256", "sign", "ECC_NIST_P256"),
    ("Verify ECDSA P-256", "verify", "ECC_NIST_P256"),
    ("Sign RSA-2048 PSS", "sign", "RSA_2048"),
    ("Verify RSA-2048 PSS", "verify", "RSA_2048"),
    ("Sign ML-DSA-65", "sign", "ML_DSA_65"),
    ("Verify ML-DSA-65", "verify", "ML_DSA_65"),
]


def bench(endpoint, binary, op, spec, connections, duration):
    import json

    env = {"AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": REGION}
    argv = ["bench", "--endpoint-url", endpoint, "--op", op, "--connections", connections, "--duration", duration, "--json"]
    if spec:
        argv += ["--sign-key-spec", spec]
    return json.loads(run_clavis(*argv, env=env, timeout=None, binary=binary).stdout)["results"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=str(CLAVIS))
    ap.add_argument("--cases", choices=["asymmetric", "secrets"], default="asymmetric")
    a = ap.parse_args()
    cases = SECRETS if a.cases == "secrets" else ASYMMETRIC
    results = {name: [] for name, _, _ in cases}
    with tempfile.TemporaryDirectory() as work:
        server = Server(Path(work) / "data", env={"RUST_LOG": os.environ.get("RUST_LOG", "warn"), **NO_QUOTA}, binary=a.binary, poll=0.1)
        try:
            server.start()
            for r in range(a.rounds):
                for name, op, spec in cases:
                    out = bench(server.endpoint, a.binary, op, spec, a.connections, a.duration)
                    if out.get("errors"):
                        sys.exit(f"errors during {name}: {out['errors']}")
                    results[name].append((out["requests_per_second"], out["p99_us"]))
                    print(f"round {r + 1}: {name}: {out['requests_per_second']:.0f} req/s, p99 {out['p99_us']} us", file=sys.stderr)
        finally:
            server.stop()
    base = statistics.median(rps for rps, _ in results[cases[0][0]])
    reference = cases[0][0].split(" ")[0]
    print(f"| operation ({a.connections} connections, {a.duration:g} s x {a.rounds} rounds, medians) | req/s | x {reference} | p99 (us) |")
    print("|---|---|---|---|")
    for name, _, _ in cases:
        rps = statistics.median(x for x, _ in results[name])
        p99 = statistics.median(y for _, y in results[name])
        print(f"| {name} | {rps:.0f} | {rps / base:.2f} | {p99:.0f} |")
    print(f"\n(commit {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()})")


if __name__ == "__main__":
    main()
