#!/usr/bin/env bash
# Runs carapace-bench --breakdown against a private PostgreSQL instance with
# pg_stat_statements preloaded (a shared instance's statistics must not be
# reset, nor the instance restarted): initdb in a temporary directory, stock
# settings plus `shared_preload_libraries=pg_stat_statements`, TLS with a
# throwaway self-signed certificate, another port. Stops and removes it on
# exit. Arguments go to carapace-bench, e.g.
#   bench/breakdown.sh --server target/release/carapace --rounds 1 --perf-dir /tmp/perf
set -euo pipefail
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
port=${CARAPACE_BENCH_PG_PORT:-55432}
bench=${CARAPACE_BENCH_BIN:-target/release/carapace-bench}
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
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c ssl=on -c shared_preload_libraries=pg_stat_statements" \
    start >/dev/null
CARAPACE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres" "$bench" --breakdown "$@"
