//! `carapace-bench`: drives Carapace's audited PHI paths over HTTP and, in
//! the same invocation, pgbench running the same SQL and pgbench running the
//! floor (the least SQL the work needs, `floor.rs`), alternating slices so
//! machine drift hits all alike; prints one machine-readable line per
//! workload. `just bench` runs it; CI runs `--smoke` so it never rots.
//!
//! Setup: a fresh PostgreSQL database (`CARAPACE_TEST_PG_URL`, superuser),
//! migrated; `--orgs` × `--patients` encrypted patients written through the
//! repository; a local RS256 issuer whose JWKS the server fetches; the
//! server (`--server`, a built `carapace` binary) started as a child process
//! in the dev profile with that `http://127.0.0.1` issuer (production
//! refuses a plain-http issuer), dev tokens off.
#![expect(
    clippy::as_conversions,
    reason = "rates and percentiles: counts and durations as f64, whole numbers back"
)]
mod audit_scale;
mod breakdown;
mod cpu;
mod floor;
mod pgbench;
mod report;
mod seed;
mod server;
mod workload;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carapace_tenancy::OrgId;
use carapace_testkit::issuer::{TestIssuer, TestKey};
use clap::Parser;
use sea_orm::ConnectionTrait as _;

use breakdown::{Breakdown, Served};
use pgbench::{Run, pgbench};
use seed::fresh_seeded;
use server::{process_stats, start_server};
use workload::{Slice, Target, Workload, closed_loop, fixed_rate};

/// Load harness for Carapace's audited PHI paths.
#[derive(Debug, Parser)]
struct Args {
    /// The `carapace` binary to run (build it with `--release` for figures).
    #[arg(long, default_value = "target/release/carapace")]
    server: PathBuf,
    /// Organizations.
    #[arg(long, default_value_t = 10)]
    orgs: usize,
    /// Patients per organization.
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// Concurrent clients (HTTP and pgbench).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per slice.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds (each runs every workload against Carapace and pgbench).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Most requests per slice.
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
    /// Requests per second of the fixed-load latency run.
    #[arg(long, default_value_t = 500)]
    fixed_rate: u64,
    /// Tiny sizes and one-second slices: proves the harness works (CI).
    #[arg(long)]
    smoke: bool,
    /// The server's `CARAPACE_DATABASE_GROUP_WORKERS` (0: its default).
    #[arg(long, default_value_t = 0)]
    group_workers: u32,
    /// More of the server's settings, `CARAPACE_NAME=value` or
    /// `TOKIO_WORKER_THREADS=n` (repeatable): the server starts with a
    /// cleared environment.
    #[arg(long, value_parser = server_env_arg)]
    server_env: Vec<(String, String)>,
    /// Audit events at scale (issue #17), one or more sizes
    /// (`1000000,20000000`): a database for each, its audit trail first
    /// filled with this many synthetic events of the past 24 months,
    /// generated in SQL and already chained; then the chainer measured on
    /// the seeded patients' events, and only W1 and the access log run,
    /// the sizes alternating; each size's ratio to the first is printed.
    #[arg(long, value_delimiter = ',')]
    audit_events: Vec<u64>,
    /// With `--audit-events`: stop after the chainer's measurement (its
    /// backlog is each organization's `--patients` creations).
    #[arg(long)]
    chainer_only: bool,
    /// Per workload, statements per request and their share of database
    /// time (`pg_stat_statements`, which must be preloaded: clears the
    /// cluster's statement statistics, so use a private instance,
    /// `bench/private-pg.sh`), WAL and checkpoints, in the last round.
    #[arg(long)]
    breakdown: bool,
    /// Record a `perf` profile of the server during each workload's slice
    /// of the last round into this directory.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.orgs = 2;
        args.patients = 50;
        args.seconds = 1;
        args.rounds = 1;
        args.fixed_rate = 50;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut out = std::io::stdout();
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    if !args.audit_events.is_empty() {
        let scale = audit_scale::Scale {
            sizes: &args.audit_events,
            orgs: args.orgs,
            patients: args.patients,
            clients: args.clients,
            seconds: args.seconds,
            rounds: args.rounds,
            max_requests: args.max_requests,
            chainer_only: args.chainer_only,
            server: &args.server,
            server_env: &server_env(&args),
        };
        return audit_scale::run(&mut out, &scale, &key, &key_hex).await;
    }
    let (pg, orgs, patients, seeded) =
        fresh_seeded(&key, args.orgs, args.patients, args.clients).await?;
    let work = tempdir()?;
    writeln!(
        out,
        "# seeded {} orgs x {} patients in {seeded:.1} s",
        args.orgs, args.patients,
    )?;
    // pgbench picks rows from this table (no org_id column: not a tenant table).
    let owner = sea_orm::Database::connect(pg.owner_url.clone()).await?;
    owner
        .execute_unprepared(&format!(
            "CREATE TABLE bench_ids AS
               SELECT (row_number() OVER ())::int AS n, org_id AS org, id,
                      encode(member_id_idx, 'hex') AS member_idx
               FROM patients;
             CREATE UNIQUE INDEX ON bench_ids (n);
             GRANT SELECT ON bench_ids TO {};",
            carapace_testkit::APP_ROLE
        ))
        .await?;
    owner.close().await?;
    let started = Instant::now();
    let floor = floor::load(args.orgs, args.patients).await?;
    writeln!(
        out,
        "# floor loaded: {} orgs x {} patients in {:.1} s",
        args.orgs,
        args.patients,
        started.elapsed().as_secs_f64()
    )?;
    let stats = if args.breakdown {
        Some(Breakdown::open(&pg.owner_url).await?)
    } else {
        None
    };

    let issuer = TestIssuer::start();
    let audit_tokens = tokens(&issuer, &orgs, "compliance", true);
    let tokens = tokens(&issuer, &orgs, "clinician", false);
    let server_env = server_env(&args);
    let (server, base) = start_server(
        &args.server,
        work.path(),
        &pg.app_url,
        &issuer.url,
        &key_hex,
        args.clients,
        &server_env,
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let target = Arc::new(Target {
        base,
        http,
        tokens,
        audit_tokens,
        patients,
    });
    // Warm-up: connections, JWKS, data keys.
    let _ = closed_loop(&target, Workload::Read, args.clients, 1, args.max_requests).await;

    let pid = server.0.id();
    let (_, cpu_before) = process_stats(pid);
    let mut served: u64 = 0;
    let mut carapace: Vec<Vec<Slice>> = vec![Vec::new(); 3];
    let mut own_sql: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut floor_tps: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut floor_cpu: Vec<(cpu::Spent, u64)> = vec![Default::default(); 3];
    let mut noaudit: Vec<f64> = Vec::new();
    let count = [("count", (args.orgs * args.patients).to_string())];
    let floor_db = floor.db.name.clone();
    for round in 0..args.rounds {
        let last = round + 1 == args.rounds;
        let stats = stats.as_ref().filter(|_| last);
        for (i, w) in Workload::ALL.iter().enumerate() {
            let profile = match &args.perf_dir {
                Some(dir) if last => Some(breakdown::profile(dir, w.name(), pid, args.seconds)?),
                _ => None,
            };
            let before = match stats {
                Some(b) => Some(b.start().await?),
                None => None,
            };
            let (_, cpu_start) = process_stats(pid);
            let mut s =
                closed_loop(&target, *w, args.clients, args.seconds, args.max_requests).await;
            s.server_cpu_s = process_stats(pid).1 - cpu_start;
            served += s.requests;
            if let (Some(b), Some(before)) = (stats, before) {
                let label = format!("{} carapace", w.name());
                b.finish(
                    &mut out,
                    before,
                    &Served {
                        datname: &pg.name,
                        label: &label,
                        requests: s.requests,
                    },
                )
                .await?;
            }
            if let Some(p) = profile {
                p.finish(&mut out, w.name())?;
            }
            let own = pgbench(
                &Run {
                    url: &pg.app_url,
                    name: w.name(),
                    script: w.script(),
                    vars: &count,
                },
                work.path(),
                args.clients,
                args.seconds,
            )?
            .tps;
            let before = match stats {
                Some(b) => Some(b.start().await?),
                None => None,
            };
            let at_floor =
                floor.pgbench(&floor.script(*w)?, work.path(), args.clients, args.seconds)?;
            if let (Some(b), Some(before)) = (stats, before) {
                let label = format!("{} floor", w.name());
                let requests = at_floor.transactions;
                b.finish(
                    &mut out,
                    before,
                    &Served {
                        datname: &floor_db,
                        label: &label,
                        requests,
                    },
                )
                .await?;
            }
            writeln!(
                out,
                "# round {round} {}: carapace {:.0} rps ({} errors), own SQL {own:.0} tps, floor {:.0} tps",
                w.name(),
                s.rps,
                s.errors,
                at_floor.tps,
            )?;
            carapace[i].push(s);
            own_sql[i].push(own);
            floor_tps[i].push(at_floor.tps);
            floor_cpu[i].0.add(at_floor.cpu);
            floor_cpu[i].1 += at_floor.transactions;
        }
        let tps = floor
            .pgbench(&floor.noaudit()?, work.path(), args.clients, args.seconds)?
            .tps;
        writeln!(
            out,
            "# round {round} W1 floor without the audit row: {tps:.0} tps"
        )?;
        noaudit.push(tps);
    }
    let (_, cpu_after) = process_stats(pid);
    let fixed = fixed_rate(&target, args.fixed_rate, args.seconds.max(1) * 2).await;
    let (rss_kib, _) = process_stats(pid);

    report::write(
        &mut out,
        &report::Measured {
            carapace,
            own_sql,
            floor: floor_tps,
            floor_cpu,
            noaudit,
            fixed,
            fixed_rate: args.fixed_rate,
            rss_kib,
            cpu_s: cpu_after - cpu_before,
            served,
        },
    )?;
    drop(server);
    Ok(())
}

/// One token per organization for a user with `role` (six hours; with
/// `mfa`, its `amr` says a second factor was used).
pub(crate) fn tokens(issuer: &TestIssuer, orgs: &[OrgId], role: &str, mfa: bool) -> Vec<String> {
    orgs.iter()
        .map(|org| {
            let mut claims = issuer.claims(&org.to_string(), &[role]);
            claims["sub"] = format!("bench-{role}").into();
            if mfa {
                claims["amr"] = serde_json::json!(["pwd", "mfa"]);
            }
            claims["exp"] = (carapace_testkit::issuer::now() + 6 * 3600).into();
            issuer.sign(TestKey::Rsa1, &claims)
        })
        .collect()
}

/// The server's extra environment: group workers and `--server-env`.
fn server_env(args: &Args) -> Vec<(String, String)> {
    std::iter::once((
        "CARAPACE_DATABASE_GROUP_WORKERS".to_owned(),
        args.group_workers.to_string(),
    ))
    .chain(args.server_env.iter().cloned())
    .collect()
}

pub(crate) fn tempdir() -> anyhow::Result<TempDir> {
    let path =
        std::env::temp_dir().join(format!("carapace-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

/// A directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--server-env CARAPACE_NAME=value` (or `TOKIO_WORKER_THREADS=n`, the
/// size of the server's main runtime).
fn server_env_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if name.starts_with("CARAPACE_") || name == "TOKIO_WORKER_THREADS" => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{arg:?} is not CARAPACE_NAME=value")),
    }
}
