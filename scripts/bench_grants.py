#!/usr/bin/env python3
"""Grant-check cost (issue 14, item 9): Decrypt latency through the real server when the key's
policy does not allow the caller and a grant must, on a key with 1 grant and on a key with
5,001 grants (the caller's one and 5,000 to other principals), for a caller the grant allows
and for one it refuses (every refused request pays the check too).

Each binary gets its own server (SQLite, `--dangerous-no-audit` unless `--audit`, so the
figures show the grant check rather than the audit fsync); the servers run side by side and
are measured in alternation, round by round. The 5,000 filler grants are written into the
database while its server is stopped (CreateGrant for each would take minutes: it reads the
key's grants to enforce the per-key quota); the measured requests all go through the server.
One boto3 client per caller, one request at a time, keep-alive; the figure is the client's
wall time per request (median and p90 of `--requests` per round).

    .venv/bin/python scripts/bench_grants.py [--binary target/release/clavis]
        [--also NAME=PATH ...] [--grants 5000] [--requests 400] [--rounds 3] [--audit]

`--also` adds another build of clavis, e.g. an older commit's binary, to compare.
Needs boto3 (tests/e2e/requirements.txt).
"""

import argparse
import json
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from harness import ACCOUNT, CLAVIS, NO_QUOTA, Server  # noqa: E402  (the suite's server harness)

ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
# Only the root principal: the account's users reach the key through grants alone.
ROOT_ONLY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "root", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*",
    "Condition": {"StringEquals": {"aws:PrincipalArn": ROOT_ARN}}}]})
# Refused requests are logged at info: the figures are the server's, not its log's.
BENCH_ENV = {"RUST_LOG": "warn", **NO_QUOTA}


def bench_server(name: str, binary: str, audit: bool, workdir: Path) -> Server:
    """One build's server (not started), SQLite in workdir/<name>, audit off unless `audit`."""
    server = Server(workdir / name.replace(" ", "_"), env=BENCH_ENV, args=[] if audit else ["--dangerous-no-audit"], binary=binary)
    server.name = name
    return server


def admin(server: Server, target: str, body: dict) -> dict:
    status, reply, _ = server.raw(target, json.dumps(body))
    if status != 200:
        sys.exit(f"{server.name}: {target} answered {status}: {reply}")
    return reply


def set_up(server: Server, fillers: int) -> dict:
    """Two keys with a grant for `app` each; `fillers` more grants on the second; `other` has none."""
    server.start()
    root = server.client()
    users = {}
    for name in ("app", "other"):
        out = admin(server, "ClavisAdmin.CreateUser", {"UserName": name, "Role": "reader"})
        users[name] = (out["User"]["Arn"], out["AccessKey"]["AccessKeyId"], out["AccessKey"]["SecretAccessKey"])
    blobs = {}
    for label in ("1 grant", f"{fillers + 1} grants"):
        kid = root.create_key(Policy=ROOT_ONLY, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
        root.create_grant(KeyId=kid, GranteePrincipal=users["app"][0], Operations=["Decrypt"])
        blobs[label] = (kid, root.encrypt(KeyId=kid, Plaintext=b"granted")["CiphertextBlob"])
    server.stop()
    big_key = blobs[f"{fillers + 1} grants"][0]
    db = sqlite3.connect(server.data_dir / "clavis.db")
    with db:
        db.executemany(
            "INSERT INTO grants (grant_id, key_id, name, grantee_principal, retiring_principal, operations, constraints, "
            "issuing_principal, created_ms, token) VALUES (?, ?, NULL, ?, NULL, 'Decrypt,Encrypt', NULL, ?, ?, ?)",
            [(secrets.token_hex(32), big_key, f"arn:aws:iam::{ACCOUNT}:user/filler-{i}", ROOT_ARN, 1_700_000_000_000 + i,
              "filler") for i in range(fillers)])
    db.close()
    server.start()
    clients = {name: server.client(akid=akid, secret=secret) for name, (_, akid, secret) in users.items()}
    return {"clients": clients, "blobs": blobs}


def measure(clients: dict, blob: bytes, requests: int) -> dict:
    out = {}
    for caller, expect_ok in (("app", True), ("other", False)):
        kms = clients[caller]
        times = []
        for i in range(requests + 20):
            t0 = time.perf_counter()
            try:
                kms.decrypt(CiphertextBlob=blob)
                ok = True
            except ClientError as e:
                if e.response["Error"]["Code"] != "AccessDeniedException":
                    raise
                ok = False
            dt = time.perf_counter() - t0
            if ok != expect_ok:
                sys.exit(f"{caller}: expected {'success' if expect_ok else 'AccessDenied'}")
            if i >= 20:  # warm-up: connections, caches
                times.append(dt * 1000)
        times.sort()
        out["allowed" if expect_ok else "refused"] = (statistics.median(times), times[int(len(times) * 0.9)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(CLAVIS), help="the clavis to measure (default: $CLAVIS_BIN or target/release/clavis)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--grants", type=int, default=5000, help="filler grants to other principals on the big key")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--audit", action="store_true", help="keep the audit log on")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clavis-bench-grants-") as work:
        servers = [bench_server("this build", args.binary, args.audit, Path(work))]
        servers += [bench_server(n, p, args.audit, Path(work)) for n, p in (a.split("=", 1) for a in args.also)]
        try:
            setups = {s.name: set_up(s, args.grants) for s in servers}
            results = {}  # (server, key label, outcome) -> [(median, p90)]
            for _ in range(args.rounds):
                for s in servers:
                    st = setups[s.name]
                    for label, (_, blob) in st["blobs"].items():
                        for outcome, fig in measure(st["clients"], blob, args.requests).items():
                            results.setdefault((s.name, label, outcome), []).append(fig)
            print(f"Decrypt on the grant path, {args.requests} requests x {args.rounds} rounds per cell, "
                  f"audit {'on' if args.audit else 'off'}; ms per request, median of the round medians (p90)")
            print(f"{'server':<14} {'key':<14} {'outcome':<9} {'median ms':>10} {'p90 ms':>8}")
            for (name, label, outcome), figs in results.items():
                med = statistics.median(f[0] for f in figs)
                p90 = statistics.median(f[1] for f in figs)
                print(f"{name:<14} {label:<14} {outcome:<9} {med:>10.2f} {p90:>8.2f}")
        finally:
            for s in servers:
                s.stop()


if __name__ == "__main__":
    main()
