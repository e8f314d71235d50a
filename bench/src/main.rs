//! `carapace-bench`: drives Carapace's audited PHI paths over HTTP and, in
//! the same invocation, pgbench running the same SQL, alternating slices so
//! machine drift hits both alike; prints one machine-readable line per
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

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use carapace_clinical::patient::{PatientInput, PatientRepository as _};
use carapace_infra::keys::KeyRing;
use carapace_infra::{Database, DbSettings, SeaOrganizations, SeaPatients};
use carapace_tenancy::{
    ClinicianScope, NewOrganization, OrgId, OrgName, OrgSettings, OrgSlug,
    OrganizationRepository as _, PhiMfa, SubjectId, TenantContext,
};
use carapace_testkit::issuer::{TestIssuer, TestKey};
use clap::Parser;
use sea_orm::ConnectionTrait as _;

mod audit_scale;

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
    /// Audit events at scale (issue #17): first fill the audit trail with
    /// this many synthetic events of the past 24 months, generated in SQL
    /// and already chained; then measure the chainer on the seeded
    /// patients' events, and run only W1 and the access log.
    #[arg(long, default_value_t = 0)]
    audit_events: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Read,
    Write,
    Search,
    /// `GET /api/v1/patients/{id}/access-log` (no pgbench counterpart).
    AccessLog,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Read, Workload::Write, Workload::Search];

    fn name(self) -> &'static str {
        match self {
            Self::Read => "W1_read",
            Self::Write => "W2_write",
            Self::Search => "W3_search",
            Self::AccessLog => "access_log",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Self::Read => include_str!("../sql/w1_read.sql"),
            Self::Write => include_str!("../sql/w2_write.sql"),
            Self::Search => include_str!("../sql/w3_search.sql"),
            Self::AccessLog => "",
        }
    }
}

/// One seeded patient.
#[derive(Clone, Debug)]
struct Seeded {
    org: usize,
    id: uuid::Uuid,
    member_id: String,
}

struct Target {
    base: String,
    http: reqwest::Client,
    tokens: Vec<String>,
    /// Compliance officers' tokens (the access log), one per organization.
    audit_tokens: Vec<String>,
    patients: Vec<Seeded>,
}

/// What one slice measured.
#[derive(Clone, Debug, Default)]
struct Slice {
    rps: f64,
    latencies_us: Vec<u64>,
    errors: u64,
    requests: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A cheap deterministic spread of request numbers over the seeded data.
fn pick(n: u64, len: usize) -> usize {
    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % len.max(1)
}

async fn request(t: &Target, w: Workload, n: u64) -> bool {
    let p = &t.patients[pick(n, t.patients.len())];
    let token = &t.tokens[p.org];
    let sent = match w {
        Workload::Read => {
            t.http
                .get(format!("{}/api/v1/patients/{}", t.base, p.id))
                .bearer_auth(token)
                .send()
                .await
        }
        Workload::Search => {
            t.http
                .get(format!(
                    "{}/api/v1/patients?member_id={}",
                    t.base, p.member_id
                ))
                .bearer_auth(token)
                .send()
                .await
        }
        Workload::AccessLog => {
            t.http
                .get(format!("{}/api/v1/patients/{}/access-log", t.base, p.id))
                .bearer_auth(&t.audit_tokens[p.org])
                .send()
                .await
        }
        Workload::Write => {
            t.http
                .post(format!("{}/api/v1/patients", t.base))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "given_name": "Bench", "family_name": format!("Write{n}"),
                    "birth_date": "1980-02-03", "member_id": format!("W-{n}"),
                }))
                .send()
                .await
        }
    };
    match sent {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

/// Closed loop: `clients` tasks as fast as they can for `secs`.
async fn closed_loop(t: &Arc<Target>, w: Workload, clients: usize, secs: u64, max: u64) -> Slice {
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (t, stop, issued) = (t.clone(), stop.clone(), issued.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= max {
                        break;
                    }
                    let begin = Instant::now();
                    if request(&t, w, n).await {
                        lat.push(begin.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut slice = Slice::default();
    for task in tasks {
        if let Ok((lat, errors)) = task.await {
            slice.latencies_us.extend(lat);
            slice.errors += errors;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    slice.requests = slice.latencies_us.len() as u64 + slice.errors;
    slice.rps = slice.latencies_us.len() as f64 / elapsed;
    slice.latencies_us.sort_unstable();
    slice
}

/// Open loop: one request every `1/rate` s for `secs`, whatever the answers.
async fn fixed_rate(t: &Arc<Target>, rate: u64, secs: u64) -> Slice {
    let total = rate * secs;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until(start + gap * n as u32).await;
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let begin = Instant::now();
            let ok = request(&t, Workload::Read, n).await;
            (ok, begin.elapsed().as_micros() as u64)
        }));
    }
    let mut slice = Slice::default();
    for task in tasks {
        match task.await {
            Ok((true, us)) => slice.latencies_us.push(us),
            _ => slice.errors += 1,
        }
    }
    slice.requests = total;
    slice.rps = slice.latencies_us.len() as f64 / secs as f64;
    slice.latencies_us.sort_unstable();
    slice
}

/// pgbench running `w`'s SQL as the server's role; its TPS.
fn pgbench(
    url: &str,
    w: Workload,
    dir: &Path,
    clients: usize,
    secs: u64,
    count: usize,
) -> anyhow::Result<f64> {
    let script = dir.join(format!("{}.sql", w.name()));
    std::fs::write(&script, w.script())?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &secs.to_string(),
        ])
        .arg("-D")
        .arg(format!("count={count}"))
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .context("running pgbench (PostgreSQL's client tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("pgbench printed no tps")
}

/// Peak resident memory (KiB) and CPU seconds of a process.
fn process_stats(pid: u32) -> (u64, f64) {
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state is field 3, utime 14, stime 15.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (hwm, ticks as f64 / 100.0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(
    binary: &Path,
    dir: &Path,
    app_url: &str,
    issuer: &str,
    master_key_hex: &str,
    pool: usize,
    group_workers: u32,
) -> anyhow::Result<(Server, String)> {
    let key_file = dir.join("master.key");
    std::fs::write(&key_file, master_key_hex)?;
    let mut child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("CARAPACE_BIND", "127.0.0.1:0")
        .env("CARAPACE_DATABASE_URL", app_url)
        .env("CARAPACE_DATABASE_POOL_MAX", pool.to_string())
        .env("CARAPACE_DATABASE_GROUP_WORKERS", group_workers.to_string())
        .env("CARAPACE_DEV_TOKENS", "false")
        .env("CARAPACE_OIDC_ISSUER", issuer)
        .env("CARAPACE_OIDC_AUDIENCE", carapace_testkit::issuer::AUDIENCE)
        .env("CARAPACE_MASTER_KEY_FILE", &key_file)
        .env("CARAPACE_DATA_DIR", dir.join("data"))
        .env("CARAPACE_LOG_LEVEL", "warn")
        // The harness measures the PHI paths, not the limiter's refusals:
        // a few principals send thousands of requests per second.
        .env("CARAPACE_RATE_LIMIT_API_PER_MINUTE", "10000000")
        .env("CARAPACE_RATE_LIMIT_API_BURST", "100000")
        .env(
            "CARAPACE_CURSOR_SECRET",
            "bench-cursor-secret-0123456789abcdef",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (build it first)", binary.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    let addr = first
        .split("http://")
        .nth(1)
        .map(str::trim)
        .context("the server printed no address")?
        .to_owned();
    Ok((Server(child), format!("http://{addr}")))
}

async fn seed(
    db: &Database,
    keys: Arc<KeyRing>,
    orgs: usize,
    per_org: usize,
    clients: usize,
) -> anyhow::Result<(Vec<OrgId>, Vec<Seeded>)> {
    let directory = SeaOrganizations::new(db.clone());
    let mut ids = Vec::new();
    for o in 0..orgs {
        let org = directory
            .create(NewOrganization {
                slug: OrgSlug::parse(&format!("bench-{o}"))?,
                name: OrgName::parse(&format!("Bench Clinic {o}"))?,
            })
            .await?;
        directory
            .update_settings(
                org.id,
                OrgSettings {
                    clinician_scope: ClinicianScope::Organization,
                    phi_mfa: PhiMfa::Admin,
                    ..OrgSettings::default()
                },
            )
            .await?;
        ids.push(org.id);
    }
    let repo = SeaPatients::new(db.clone(), keys);
    let next = Arc::new(AtomicU64::new(0));
    let total = (orgs * per_org) as u64;
    let ids_shared = Arc::new(ids.clone());
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (repo, next, ids) = (repo.clone(), next.clone(), ids_shared.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return Ok::<_, anyhow::Error>(out);
                    }
                    let org = n as usize % ids.len();
                    let member_id = format!("M-{org}-{n}");
                    let d = PatientInput {
                        given_name: format!("Given{n}"),
                        family_name: format!("Family{}", n % 1000),
                        birth_date: "1980-02-03".into(),
                        member_id: Some(member_id.clone()),
                        phone: Some("+1 555 0100".into()),
                        email: None,
                        sex: None,
                    }
                    .parse(time::macros::date!(2026 - 01 - 01))
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    let who = carapace_audit_access(ids[org])?;
                    let p = repo.create(&who, &d, None).await?;
                    out.push(Seeded {
                        org,
                        id: p.id.as_uuid(),
                        member_id,
                    });
                }
            })
        })
        .collect();
    let mut seeded = Vec::with_capacity(total as usize);
    for t in tasks {
        seeded.extend(t.await??);
    }
    Ok((ids, seeded))
}

fn carapace_audit_access(org: OrgId) -> anyhow::Result<carapace_audit::Access> {
    Ok(carapace_audit::Access::system(TenantContext::new(
        org,
        SubjectId::parse("system:bench-seed")?,
    )))
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
    let Some(pg) = carapace_testkit::postgres_fresh("carapace_bench", true).await else {
        bail!("set CARAPACE_TEST_PG_URL (a superuser URL) to run the benchmark");
    };
    let work = tempdir()?;
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut settings = DbSettings::new(pg.app_url.clone().into());
    settings.pool_max = args.clients as u32;
    let db = Database::connect(&settings).await?;
    let keys = Arc::new(KeyRing::new(
        db.clone(),
        Arc::new(carapace_phi_crypto::LocalSealer::new(&key)),
    ));
    let started = Instant::now();
    let (orgs, patients) = seed(&db, keys, args.orgs, args.patients, args.clients).await?;
    writeln!(
        out,
        "# seeded {} orgs x {} patients in {:.1} s",
        args.orgs,
        args.patients,
        started.elapsed().as_secs_f64()
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
    if args.audit_events > 0 {
        let secs = audit_scale::prefill(&owner, args.audit_events).await?;
        writeln!(
            out,
            "# generated {} chained audit events in {secs:.1} s",
            args.audit_events
        )?;
        let c = audit_scale::measure_chainer(&owner, &pg.app_url).await?;
        writeln!(out, "audit_events_in_table {}", args.audit_events)?;
        writeln!(
            out,
            "chainer events {} wall_s {:.2} client_cpu_s {:.2} db_cpu_s {:.2} cpu_s_per_1000_events {:.4}",
            c.events,
            c.wall_s,
            c.client_cpu_s,
            c.db_cpu_s,
            if c.events > 0 {
                (c.client_cpu_s + c.db_cpu_s) / c.events as f64 * 1000.0
            } else {
                0.0
            }
        )?;
    }
    owner.close().await?;
    db.close().await;

    let issuer = TestIssuer::start();
    let tokens: Vec<String> = orgs
        .iter()
        .map(|org| {
            let mut claims = issuer.claims(&org.to_string(), &["clinician"]);
            claims["sub"] = "bench-clinician".into();
            claims["exp"] = (carapace_testkit::issuer::now() + 6 * 3600).into();
            issuer.sign(TestKey::Rsa1, &claims)
        })
        .collect();
    let audit_tokens: Vec<String> = orgs
        .iter()
        .map(|org| {
            let mut claims = issuer.claims(&org.to_string(), &["compliance"]);
            claims["sub"] = "bench-compliance".into();
            claims["amr"] = serde_json::json!(["pwd", "mfa"]);
            claims["exp"] = (carapace_testkit::issuer::now() + 6 * 3600).into();
            issuer.sign(TestKey::Rsa1, &claims)
        })
        .collect();
    let (server, base) = start_server(
        &args.server,
        work.path(),
        &pg.app_url,
        &issuer.url,
        &key_hex,
        args.clients,
        args.group_workers,
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
    let workloads: &[Workload] = if args.audit_events > 0 {
        &[Workload::Read, Workload::AccessLog]
    } else {
        &Workload::ALL
    };
    let mut carapace: Vec<Vec<Slice>> = vec![Vec::new(); workloads.len()];
    let mut baseline: Vec<Vec<f64>> = vec![Vec::new(); workloads.len()];
    let count = args.orgs * args.patients;
    for round in 0..args.rounds {
        for (i, w) in workloads.iter().enumerate() {
            let s = closed_loop(&target, *w, args.clients, args.seconds, args.max_requests).await;
            served += s.requests;
            let tps = if *w == Workload::AccessLog {
                0.0
            } else {
                pgbench(
                    &pg.app_url,
                    *w,
                    work.path(),
                    args.clients,
                    args.seconds,
                    count,
                )?
            };
            writeln!(
                out,
                "# round {round} {}: carapace {:.0} rps ({} errors), pgbench {:.0} tps",
                w.name(),
                s.rps,
                s.errors,
                tps
            )?;
            carapace[i].push(s);
            baseline[i].push(tps);
        }
    }
    let (_, cpu_after) = process_stats(pid);
    let fixed = fixed_rate(&target, args.fixed_rate, args.seconds.max(1) * 2).await;
    let (rss_kib, _) = process_stats(pid);

    writeln!(out, "workload rps p50_ms p99_ms errors ratio_to_pgbench")?;
    for (i, w) in workloads.iter().enumerate() {
        let rps = median(carapace[i].iter().map(|s| s.rps).collect());
        let p50 = median(
            carapace[i]
                .iter()
                .map(|s| percentile(&s.latencies_us, 0.5))
                .collect(),
        );
        let p99 = median(
            carapace[i]
                .iter()
                .map(|s| percentile(&s.latencies_us, 0.99))
                .collect(),
        );
        let errors: u64 = carapace[i].iter().map(|s| s.errors).sum();
        let tps = median(baseline[i].clone());
        writeln!(
            out,
            "{} {rps:.0} {p50:.2} {p99:.2} {errors} {:.2}",
            w.name(),
            if tps > 0.0 { rps / tps } else { 0.0 }
        )?;
    }
    writeln!(
        out,
        "fixed_load_{}rps_W1 p50_ms {:.2} p99_ms {:.2} errors {}",
        args.fixed_rate,
        percentile(&fixed.latencies_us, 0.5),
        percentile(&fixed.latencies_us, 0.99),
        fixed.errors
    )?;
    writeln!(out, "server_peak_rss_mib {:.1}", rss_kib as f64 / 1024.0)?;
    writeln!(
        out,
        "server_cpu_s_per_1000_requests {:.3}",
        if served > 0 {
            (cpu_after - cpu_before) / served as f64 * 1000.0
        } else {
            0.0
        }
    )?;
    drop(server);
    Ok(())
}

fn tempdir() -> anyhow::Result<TempDir> {
    let path =
        std::env::temp_dir().join(format!("carapace-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
