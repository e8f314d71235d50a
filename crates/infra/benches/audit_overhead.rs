//! Reads with audit against reads without, in one run on real PostgreSQL
//! (`CARAPACE_TEST_PG_URL`, a fresh database), 32 concurrent clients,
//! alternating 3-second slices so machine drift hits every workload alike.
//!
//! - `plain`: the read's SQL alone (tenant transaction, SELECT, COMMIT);
//! - `audited`: the same plus the audit INSERT in the transaction;
//! - `repository`: `SeaPatients::get` (tenant transaction, SELECT, audit
//!   INSERT, COMMIT, decrypt), what the API runs.
//!
//! Prints `workload ops_per_s ratio_to_plain` per workload (medians of 3
//! rounds). Chaining runs beside, as in the server. Run: `cargo bench -p
//! carapace-infra --bench audit_overhead`.
#![expect(
    clippy::as_conversions,
    reason = "rates and percentiles: counts and durations as f64, whole numbers back"
)]

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use carapace_audit::{Access, Outcome};
use carapace_clinical::patient::{PatientId, PatientInput, PatientRepository as _};
use carapace_infra::audit::AuditChainer;
use carapace_infra::keys::KeyRing;
use carapace_infra::{Database, DbSettings, SeaOrganizations, SeaPatients};
use carapace_tenancy::{
    NewOrganization, OrgId, OrgName, OrgSlug, OrganizationRepository as _, SubjectId, TenantContext,
};
use sea_orm::{
    ConnectionTrait as _, DatabaseConnection, DbBackend, Statement, TransactionTrait as _,
};

const CLIENTS: usize = 32;
const SLICE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;
const PATIENTS: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Plain,
    Audited,
    Repository,
}

struct Fixture {
    raw: DatabaseConnection,
    repo: SeaPatients,
    org: OrgId,
    patients: Vec<PatientId>,
}

async fn one(f: &Fixture, w: Workload, i: u64) -> Result<(), String> {
    let id = f.patients[(i as usize * 7919) % f.patients.len()];
    let ctx = TenantContext::new(
        f.org,
        SubjectId::parse("bench-reader").map_err(|e| e.to_string())?,
    );
    match w {
        Workload::Repository => {
            let found = f
                .repo
                .get(&Access::system(ctx), id)
                .await
                .map_err(|e| e.to_string())?;
            found.map(|_| ()).ok_or_else(|| "missing".to_owned())
        }
        Workload::Plain | Workload::Audited => {
            let tx = f.raw.begin().await.map_err(|e| e.to_string())?;
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config('app.org_id', $1, true)",
                [f.org.to_string().into()],
            ))
            .await
            .map_err(|e| e.to_string())?;
            let row = tx
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT * FROM patients WHERE org_id = $1 AND id = $2",
                    [f.org.as_uuid().into(), id.as_uuid().into()],
                ))
                .await
                .map_err(|e| e.to_string())?;
            if row.is_none() {
                return Err("missing".into());
            }
            if w == Workload::Audited {
                let event = Access::system(ctx).event(
                    "patient.read",
                    "patient",
                    Some(id.as_uuid().to_string()),
                    Outcome::Allowed,
                );
                carapace_infra::audit::append(&tx, std::slice::from_ref(&event))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())
        }
    }
}

async fn slice(f: &Arc<Fixture>, w: Workload) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (f, stop, done, errors) = (f.clone(), stop.clone(), done.clone(), errors.clone());
            tokio::spawn(async move {
                let mut i = c as u64 * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    match one(&f, w, i).await {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(SLICE).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        errors.load(Ordering::Relaxed),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let Some(pg) = carapace_testkit::postgres_fresh("audit_overhead_bench", true).await else {
        writeln!(out, "SKIP: set CARAPACE_TEST_PG_URL to run this benchmark")?;
        return Ok(());
    };
    let mut settings = DbSettings::new(pg.app_url.clone().into());
    settings.pool_max = CLIENTS as u32 + 4;
    // `CARAPACE_BENCH_GROUP_WORKERS` tries another group-commit width.
    if let Some(n) = std::env::var("CARAPACE_BENCH_GROUP_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.group_workers = n;
    }
    let db = Database::connect(&settings).await?;
    let org = SeaOrganizations::new(db.clone())
        .create(NewOrganization {
            slug: OrgSlug::parse("bench")?,
            name: OrgName::parse("Bench Clinic")?,
        })
        .await?
        .id;
    let keys = Arc::new(KeyRing::new(
        db.clone(),
        Arc::new(carapace_phi_crypto::LocalSealer::new(&[7; 32])),
    ));
    let repo = SeaPatients::new(db.clone(), keys);
    let writer = Access::system(TenantContext::new(org, SubjectId::parse("bench-writer")?));
    let mut patients = Vec::with_capacity(PATIENTS);
    for i in 0..PATIENTS {
        let d = PatientInput {
            given_name: format!("Given{i}"),
            family_name: "Bench".into(),
            birth_date: "1980-02-03".into(),
            member_id: Some(format!("M-{i}")),
            phone: None,
            email: None,
            sex: None,
        }
        .parse(time::macros::date!(2026 - 01 - 01))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        patients.push(repo.create(&writer, &d, None).await?.id);
    }
    let mut raw_opts = sea_orm::ConnectOptions::new(pg.app_url.clone());
    raw_opts
        .max_connections(CLIENTS as u32 + 4)
        .sqlx_logging(false);
    let raw = sea_orm::Database::connect(raw_opts).await?;
    let fixture = Arc::new(Fixture {
        raw,
        repo,
        org,
        patients,
    });
    // Chaining runs beside the load, as in the server.
    let chainer = AuditChainer::new(
        db.clone(),
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        Duration::from_secs(60),
    );
    let chaining = tokio::spawn(async move {
        loop {
            let _ = chainer.run_once().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let workloads = [Workload::Plain, Workload::Audited, Workload::Repository];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); workloads.len()];
    let mut errors = 0;
    // Warm-up slice, not counted.
    let _ = slice(&fixture, Workload::Repository).await;
    for round in 0..ROUNDS {
        for (i, w) in workloads.iter().enumerate() {
            let (rate, e) = slice(&fixture, *w).await;
            errors += e;
            writeln!(out, "round {round} {w:?}: {rate:.0} ops/s ({e} errors)")?;
            results[i].push(rate);
        }
    }
    chaining.abort();
    let plain = median(results[0].clone());
    writeln!(out, "workload ops_per_s ratio_to_plain")?;
    for (i, w) in workloads.iter().enumerate() {
        let m = median(results[i].clone());
        writeln!(
            out,
            "{} {m:.0} {:.2}",
            format!("{w:?}").to_lowercase(),
            if plain > 0.0 { m / plain } else { 0.0 }
        )?;
    }
    writeln!(out, "errors {errors}")?;
    db.close().await;
    Ok(())
}
