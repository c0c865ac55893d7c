#!/usr/bin/env bash
# Runs the whole benchmark comparison in one go on this machine (see BENCHMARKS.md):
# Clavis with audit on and off, the protocol-floor baseline server (benches/baseline) and moto's
# server, then CreateKey throughput, startup time and memory with 100,000 keys.
#
#   scripts/bench.sh [--duration S] [--connections N] [--rounds R] [--keys K]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p clavis -p clavis-baseline
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check 'moto[server]==5.2.5' || echo "moto could not be installed; comparing without it" >&2
exec .venv/bin/python scripts/bench.py --moto .venv/bin/moto_server "$@"
