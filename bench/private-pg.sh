#!/usr/bin/env bash
# Runs a command (normally carapace-bench) against a private PostgreSQL
# instance: initdb in a temporary directory, stock settings, TLS with a
# throwaway self-signed certificate, another port, and
# `shared_preload_libraries=pg_stat_statements` (what `--breakdown` needs; a
# shared instance must not be restarted for it, nor its statistics reset),
# `track_wal_io_timing=on` (the time spent flushing WAL, which
# pg_stat_statements does not see: a COMMIT's flush happens after the
# statement's own execution).
# CARAPACE_TEST_PG_URL points at it while the command runs; the instance is
# stopped and removed on exit. PRELOAD= (empty) leaves pg_stat_statements
# out, for figures without its overhead. E.g.
#   bench/private-pg.sh target/release/carapace-bench --server target/release/carapace \
#       --breakdown --rounds 1 --perf-dir target/bench-perf
set -euo pipefail
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
port=${CARAPACE_BENCH_PG_PORT:-55432}
preload=${PRELOAD-pg_stat_statements}
dir=$(mktemp -d /tmp/carapace-bench-pg.XXXXXX)
as_pg() {
    # initdb and postgres refuse to run as root.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
stop() {
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
as_pg "$pgbin/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
as_pg openssl req -new -x509 -days 1 -nodes -subj /CN=127.0.0.1 \
    -keyout "$dir/data/server.key" -out "$dir/data/server.crt" 2>/dev/null
chmod 600 "$dir/data/server.key"
as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c ssl=on -c track_wal_io_timing=on -c shared_preload_libraries=$preload" \
    start >/dev/null
CARAPACE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres" "$@"
