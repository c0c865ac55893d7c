#!/usr/bin/env bash
# Runs the Clavis benchmark comparison on this machine: `clavis bench` against Clavis with the
# audit log on and off, for Encrypt, Decrypt and GenerateDataKey, alternating the two servers
# (machines are noisy), and prints the audit-on/audit-off ratios.
#
#   scripts/bench.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-32}
ROUNDS=${3:-2}

cargo build --release --locked -q
BIN=$PWD/target/release/clavis
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

export CLAVIS_ROOT_ACCESS_KEY_ID=AKIABENCHMARKADMIN00 CLAVIS_ROOT_SECRET_ACCESS_KEY=bench-secret-0123456789-abcdefghij
export AWS_ACCESS_KEY_ID=$CLAVIS_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$CLAVIS_ROOT_SECRET_ACCESS_KEY AWS_REGION=us-east-1

start() { # name port extra-args...
  local name=$1 port=$2; shift 2
  RUST_LOG=warn "$BIN" serve --data-dir "$WORK/$name" --listen "127.0.0.1:$port" "$@" >"$WORK/$name.log" 2>&1 &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
  echo "server $name did not start" >&2; cat "$WORK/$name.log" >&2; exit 1
}
start audit-on 18701
start audit-off 18702 --dangerous-no-audit

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "load generator on the same machine; ${CONNECTIONS} connections; ${DURATION}s per run after 1s warm-up; ${ROUNDS} rounds"
printf "%-18s %-10s %10s %9s %9s\n" operation server "req/s" "p50 µs" "p99 µs"
for op in encrypt decrypt generate-data-key; do
  for round in $(seq "$ROUNDS"); do
    for server in audit-on:18701 audit-off:18702; do
      name=${server%%:*} port=${server##*:}
      "$BIN" bench --endpoint-url "http://127.0.0.1:$port" --op "$op" --connections "$CONNECTIONS" --duration "$DURATION" --json \
        | python3 -c "
import json, sys
r = json.load(sys.stdin)['results'][0]
print(f\"{r['operation']:<18} {'$name':<10} {r['requests_per_second']:>10.0f} {r['p50_us']:>9} {r['p99_us']:>9}\")
" | tee -a "$WORK/results.txt"
    done
  done
done
echo
python3 - "$WORK/results.txt" <<'PY'
import collections, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    op, server, rps, *_ = line.split()
    rows[(op, server)].append(float(rps))
for op in ["encrypt", "decrypt", "generate-data-key"]:
    on = sum(rows[(op, "audit-on")]) / len(rows[(op, "audit-on")])
    off = sum(rows[(op, "audit-off")]) / len(rows[(op, "audit-off")])
    print(f"{op:<18} audit on / audit off = {on:.0f} / {off:.0f} = {on / off:.2f}")
PY
