//! The seed: organizations and encrypted patients written through the
//! repository, the way the server writes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use carapace_clinical::patient::{PatientInput, PatientRepository as _};
use carapace_infra::keys::KeyRing;
use carapace_infra::{Database, SeaOrganizations, SeaPatients};
use carapace_tenancy::{
    ClinicianScope, NewOrganization, OrgId, OrgName, OrgSettings, OrgSlug,
    OrganizationRepository as _, PhiMfa, SubjectId, TenantContext,
};

/// One seeded patient.
#[derive(Clone, Debug)]
pub(crate) struct Seeded {
    pub(crate) org: usize,
    pub(crate) id: uuid::Uuid,
    pub(crate) member_id: String,
}

pub(crate) async fn seed(
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
