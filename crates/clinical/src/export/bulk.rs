//! The bulk-export use cases: whose data an export holds (decided, and
//! allowed, when it starts) and what it reads when it runs, through the
//! same use cases, decisions and audit events as the reads it stands for.
//! The FHIR wire format of its files is the server's.

use carapace_audit::Outcome;
use carapace_auth::smart::ResourceType;
use time::OffsetDateTime;

use super::{ExportId, narrow, shared_types};
use crate::ClinicalError;
use crate::access::{AuditTrail, Caller, PatientAccess};
use crate::consultation::Consent;
use crate::medication::{Medication, MedicationRecords, MedicationRepository, SideEffect};
use crate::patient::{PageLimit, Patient, PatientId, PatientQuery, PatientRepository};

/// Most patients one export holds (it holds them in memory while it
/// runs); a larger one fails and is asked for by `_since` in parts.
pub const MAX_PATIENTS: usize = 100_000;

/// Whose data an export holds, decided (and allowed) when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every patient the caller may list.
    Listed,
    /// One patient.
    One(PatientId),
}

/// What an export of `consent` holds: its patient, and those of the
/// `requested` types it shares at `now`. A consent that shares nothing
/// exportable (withdrawn, expired, or appointments only) is refused
/// (`consent_inactive`); one that shares none of the requested types too
/// ([`narrow`]).
pub fn consent_scope(
    consent: &Consent,
    requested: &[ResourceType],
    now: OffsetDateTime,
) -> Result<(Scope, Vec<ResourceType>), ClinicalError> {
    let shared = shared_types(&consent.readable(now));
    if shared.is_empty() {
        return Err(ClinicalError::Refused {
            code: "consent_inactive",
            detail: "the consent was withdrawn, has expired or shares nothing exportable",
        });
    }
    Ok((Scope::One(consent.patient), narrow(requested, &shared)?))
}

/// A running export: its id, whose data, which types, changed since when.
#[derive(Clone, Copy, Debug)]
pub struct Job<'t> {
    /// Its id (named in each disclosure's audit event).
    pub id: ExportId,
    /// Whose data.
    pub scope: Scope,
    /// Which types.
    pub types: &'t [ResourceType],
    /// Only what was created or changed since.
    pub since: Option<OffsetDateTime>,
}

/// What an export writes, each kind only as asked for and changed since.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Patients (the `Patient` type).
    pub patients: Vec<Patient>,
    /// Medication statements.
    pub medications: Vec<Medication>,
    /// Side effects (`AdverseEvent`).
    pub side_effects: Vec<SideEffect>,
}

/// Reads what `job` exports for `caller`, through `records` and the
/// patient reads over the same ports: each patient listed or read, and each
/// history read, as the same use case decides and records it; then one
/// `patient.export` event per patient whose data leaves, before anything is
/// returned (fails closed). `go_on` is asked between reads, so that a stop
/// (the kill switch) ends the export early with its error.
pub async fn gather<P, T, M, E>(
    records: &MedicationRecords<'_, P, T, M>,
    caller: &Caller<'_>,
    job: &Job<'_>,
    now: OffsetDateTime,
    go_on: impl Fn() -> Result<(), E>,
) -> Result<Gathered, E>
where
    P: PatientRepository,
    T: AuditTrail,
    M: MedicationRepository,
    E: From<ClinicalError>,
{
    let patients = PatientAccess {
        patients: records.patients,
        trail: records.trail,
        events: records.events,
    };
    let wants = |t: ResourceType| job.types.contains(&t);
    let changed = |at: OffsetDateTime| job.since.is_none_or(|s| at >= s);
    // A group's patient is read only when its demographics are exported.
    let (ids, read): (Vec<PatientId>, Vec<Patient>) = match job.scope {
        Scope::Listed => {
            let all = listed(&patients, caller, &go_on).await?;
            (all.iter().map(|p| p.id).collect(), all)
        }
        Scope::One(id) if wants(ResourceType::Patient) => {
            (vec![id], vec![patients.read(caller, id, now).await?])
        }
        Scope::One(id) => (vec![id], Vec::new()),
    };
    let mut out = Gathered {
        patients: read
            .into_iter()
            .filter(|p| wants(ResourceType::Patient) && changed(p.updated_at))
            .collect(),
        ..Gathered::default()
    };
    let (meds, effects) = (
        wants(ResourceType::MedicationStatement),
        wants(ResourceType::AdverseEvent),
    );
    if meds || effects {
        for id in &ids {
            go_on()?;
            let (m, e) = records.history(caller, *id, now).await?;
            out.medications
                .extend(m.into_iter().filter(|m| meds && changed(m.created_at)));
            out.side_effects
                .extend(e.into_iter().filter(|e| effects && changed(e.created_at)));
        }
    }
    // Every patient whose data leaves is a disclosure in their access log.
    for id in &ids {
        let disclosed = caller
            .access
            .event(
                "patient.export",
                "patient",
                Some(id.as_uuid().to_string()),
                Outcome::Allowed,
            )
            .with_detail(format!("bulk export {}", job.id));
        records
            .trail
            .record(&disclosed)
            .await
            .map_err(ClinicalError::from)?;
    }
    Ok(out)
}

/// Every patient `caller` may list, page by page; more than
/// [`MAX_PATIENTS`] is refused (`export_too_large`).
async fn listed<P, T, E>(
    patients: &PatientAccess<'_, P, T>,
    caller: &Caller<'_>,
    go_on: &impl Fn() -> Result<(), E>,
) -> Result<Vec<Patient>, E>
where
    P: PatientRepository,
    T: AuditTrail,
    E: From<ClinicalError>,
{
    let mut all = Vec::new();
    let mut after = None;
    loop {
        go_on()?;
        let query = PatientQuery {
            limit: PageLimit::parse(Some(u32::from(PageLimit::MAX)))?,
            after,
            ..PatientQuery::default()
        };
        let page = patients.list(caller, query).await?;
        all.extend(page.items);
        if all.len() > MAX_PATIENTS {
            return Err(ClinicalError::Refused {
                code: "export_too_large",
                detail: "more than 100000 patients: export by _since in parts",
            }
            .into());
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}
