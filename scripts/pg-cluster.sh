#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: no system service, a data directory of its own,
# loopback only, trust authentication for the local test user.
#
#   scripts/pg-cluster.sh start DIR PORT   # initdb (first time) + start; prints the database URL
#   scripts/pg-cluster.sh stop DIR         # fast shutdown
#   scripts/pg-cluster.sh bin              # the directory holding initdb/pg_ctl (installs postgresql if missing)
#
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (created
# by Debian's package).
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

ensure_installed() {
  if ! pg_bin >/dev/null; then
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    # The tests start their own clusters; Debian's default one is not needed.
    as_root sh -c 'command -v pg_ctlcluster >/dev/null && for c in /etc/postgresql/*/main; do [ -d "$c" ] && pg_ctlcluster "$(basename "$(dirname "$c")")" main stop || true; done' >&2 || true
  fi
  pg_bin
}

run_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd="${1:-}"
case "$cmd" in
  bin)
    ensure_installed
    ;;
  start)
    dir="$2"; port="$3"
    bin="$(ensure_installed)"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; chmod 700 "$dir"; fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      run_pg "$bin/initdb" -D "$dir" -U clavis --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
        || run_pg "$bin/initdb" -D "$dir" -U clavis --auth=trust -E UTF8 >"$dir.initdb.log" 2>&1
    fi
    run_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 30 \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=on -c max_connections=200" start >/dev/null
    echo "postgres://clavis@127.0.0.1:$port/postgres"
    ;;
  stop)
    dir="$2"
    bin="$(pg_bin)"
    run_pg "$bin/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null
    ;;
  *)
    echo "usage: $0 start DIR PORT | stop DIR | bin" >&2
    exit 2
    ;;
esac
