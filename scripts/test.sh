#!/usr/bin/env bash
# Runs every Clavis check and test: rustfmt, clippy with the workspace lints as errors, the
# documentation build with warnings as errors, a build without the default features, ruff over
# the Python, the Rust unit and integration tests of every crate, then the end-to-end suite,
# which starts the real `clavis` binary and drives it with boto3 and the AWS CLI. Installs what the tests need itself (a Python venv from PyPI, PostgreSQL from
# Debian's packages) and starts the throwaway PostgreSQL clusters it tests against.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

echo "==> cargo build --release"
cargo build --release --locked

echo "==> Python venv with boto3 and the AWS CLI; openssl for the BYOK tests; SoftHSM2 for the HSM tests"
missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v openssl >/dev/null || missing+=(openssl)
[ -f /usr/lib/softhsm/libsofthsm2.so ] || missing+=(softhsm2)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq "${missing[@]}"
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt

echo "==> PostgreSQL for the storage conformance suite and the multi-node tests"
scripts/pg-cluster.sh bin >/dev/null   # installs Debian's postgresql if it is missing
pg_dir="$(mktemp -d /tmp/clavis-test-pg.XXXXXX)"
chmod 755 "$pg_dir"
pg_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export CLAVIS_TEST_DATABASE_URL="$(scripts/pg-cluster.sh start "$pg_dir/data" "$pg_port")"
trap 'scripts/pg-cluster.sh stop "$pg_dir/data" || true; rm -rf "$pg_dir"' EXIT

echo "==> cargo fmt --check (rustfmt.toml)"
cargo fmt --all --check

echo "==> cargo clippy (the workspace lints: no unwrap/expect/panic outside tests, every allow with its reason)"
cargo clippy --workspace --all-targets --release --locked -- -D warnings

echo "==> cargo doc (every public item documented, every intra-doc link resolves)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "==> cargo check without the default features (PKCS#11 left out)"
cargo check --release --locked -p clavis --no-default-features

echo "==> ruff over tests/ and scripts/ (ruff.toml)"
.venv/bin/ruff check tests scripts

echo "==> cargo test (all crates)"
cargo test --release --workspace --locked

echo "==> end-to-end tests (real clavis binary, boto3, AWS CLI)"
CLAVIS_BIN="$PWD/target/release/clavis" .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider "$@"
