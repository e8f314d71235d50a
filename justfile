# Carapace tasks. `just` lists them.

pg_url := env_var_or_default("CARAPACE_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
redis_url := env_var_or_default("CARAPACE_TEST_REDIS_URL", "redis://127.0.0.1:6379")

# List recipes.
default:
    @just --list

# Serve in the dev profile on embedded SQLite (127.0.0.1:8080).
run:
    cargo run --release

# Unit and SQLite tests; PostgreSQL tests print SKIP.
test:
    cargo test --workspace

# Every test against local PostgreSQL and Redis, as CI runs them.
test-all:
    CARAPACE_REQUIRE_SERVICES=1 CARAPACE_TEST_PG_URL={{pg_url}} CARAPACE_TEST_REDIS_URL={{redis_url}} cargo test --workspace

# Rewrite openapi.json from the served document (a test checks they match).
openapi:
    CARAPACE_WRITE_OPENAPI=1 cargo test -q -p carapace-server --lib -- the_committed_openapi_document_is_the_served_one

# Generate the typed TypeScript client from openapi.json
# (clients/typescript/src/schema.d.ts, with openapi-typescript; the runtime
# is openapi-fetch) and type-check the example program.
client:
    cd clients/typescript && npm ci --no-audit --no-fund && npm run generate && npm run check

# The TypeScript example against a served API (what CI runs).
client-example:
    cargo build -p carapace-server
    scripts/ts-client target/debug/carapace

# The console in headless Chromium (apt-get install chromium); screenshots
# in target/console-e2e.
console-e2e:
    cargo build -p carapace-server
    scripts/console-e2e target/debug/carapace target/console-e2e

# Build the Containerfile with podman over bases made from Debian's
# packages and run the image against TLS PostgreSQL, Redis and moto (root).
container-check:
    scripts/container-check

# Carapace behind PgBouncer in transaction mode (builds PgBouncer 1.24.1
# from Debian's source package into target/pgbouncer once).
pgbouncer-check:
    CARAPACE_REQUIRE_SERVICES=1 CARAPACE_TEST_PG_URL={{pg_url}} CARAPACE_TEST_REDIS_URL={{redis_url}} scripts/pgbouncer-check

# Formatting and lints, warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
    cargo machete

# Dependency policy without network (bans, licenses, sources).
deny:
    cargo deny check bans licenses sources

# Dependency policy including the advisory database (needs network).
deny-advisories:
    cargo deny check

# Everything CI runs.
ci:
    bash .ci/run

# Create an organization and print a clinician dev token for it.
dev-token slug="demo":
    -cargo run --release -- org create --name "{{slug}}" --slug {{slug}}
    cargo run --release -- dev-token --org {{slug}} --role clinician --mfa

# The load harness (bench/): W1 read, W2 write, W3 search over HTTP against
# pgbench running the same SQL and the floor's, alternating slices; needs
# PostgreSQL, psql and pgbench. Release build first (about 7 minutes cold).
bench:
    cargo build --release -p carapace-server -p carapace-bench
    CARAPACE_TEST_PG_URL={{pg_url}} target/release/carapace-bench --server target/release/carapace

# Where the database's time goes (issue #20): the harness against a private
# PostgreSQL with pg_stat_statements, one round, a perf profile of the server.
bench-breakdown:
    cargo build --release -p carapace-server -p carapace-bench
    bench/private-pg.sh target/release/carapace-bench --server target/release/carapace --breakdown --rounds 1 --perf-dir target/bench-perf

# The harness in smoke mode (seconds; what CI runs).
bench-smoke:
    cargo build -p carapace-server -p carapace-bench
    CARAPACE_TEST_PG_URL={{pg_url}} target/debug/carapace-bench --smoke --server target/debug/carapace
    CARAPACE_TEST_PG_URL={{pg_url}} target/debug/carapace-bench --smoke --server target/debug/carapace --audit-events 1000,3000

# The audit trail at scale (issue #17): 1 M and 20 M events side by side,
# a second 1 M database as the run's control; about 20 minutes, 20 GB of
# disk in a private PostgreSQL (docs/performance.md).
bench-audit-scale:
    cargo build --release -p carapace-server -p carapace-bench
    PRELOAD= bench/private-pg.sh target/release/carapace-bench --server target/release/carapace --audit-events 1000000,20000000,1000000 --seconds 10 --rounds 5

# Micro-benchmarks (criterion): policy, audit hashing, token verification
# with a cached JWKS, PHI encryption per record; then audited reads against
# plain reads on local PostgreSQL (ratios in one run).
bench-micro:
    cargo bench -p carapace-auth --bench policy
    cargo bench -p carapace-audit --bench hashing
    cargo bench -p carapace-infra --bench token_verify
    cargo bench -p carapace-phi-crypto
    CARAPACE_TEST_PG_URL={{pg_url}} cargo bench -p carapace-infra --bench audit_overhead
