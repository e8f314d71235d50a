//! The seed: organizations and encrypted patients written through the
//! repository, the way the server writes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use carapace_clinical::patient::{PatientInput, PatientRepository as _};
use carapace_infra::keys::KeyRing;
use carapace_infra::{Database, DbSettings, SeaOrganizations, SeaPatients};
use carapace_tenancy::{
    ClinicianScope, NewOrganization, OrgId, OrgName, OrgSettings, OrgSlug,
    OrganizationRepository as _, PhiMfa, SubjectId, TenantContext,
};
use carapace_testkit::PgTestDb;

/// One seeded patient.
#[derive(Clone, Debug)]
pub(crate) struct Seeded {
    pub(crate) org: usize,
    pub(crate) id: uuid::Uuid,
    pub(crate) member_id: String,
}

/// A fresh, migrated PostgreSQL database (`CARAPACE_TEST_PG_URL`) with
/// `orgs` organizations of `per_org` patients each, written through the
/// repository under the master key `key` on `clients` connections; and
/// the seconds the seeding took.
pub(crate) async fn fresh_seeded(
    key: &[u8; 32],
    orgs: usize,
    per_org: usize,
    clients: usize,
) -> anyhow::Result<(PgTestDb, Vec<OrgId>, Vec<Seeded>, f64)> {
    let pg = carapace_testkit::postgres_fresh("carapace_bench", true)
        .await
        .context("set CARAPACE_TEST_PG_URL (a superuser URL) to run the benchmark")?;
    let mut settings = DbSettings::new(pg.app_url.clone().into());
    settings.pool_max = u32::try_from(clients)?;
    let db = Database::connect(&settings).await?;
    let keys = Arc::new(KeyRing::new(
        db.clone(),
        Arc::new(carapace_phi_crypto::LocalSealer::new(key)),
    ));
    let started = std::time::Instant::now();
    let (ids, seeded) = seed(&db, keys, orgs, per_org, clients).await?;
    let seconds = started.elapsed().as_secs_f64();
    db.close().await;
    Ok((pg, ids, seeded, seconds))
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
