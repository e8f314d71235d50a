//! Bulk Data export (FHIR Flat FHIR, v2): the job a client starts, its
//! files, and the port that keeps both (files sealed under the
//! organization's key). What a job exports is decided when it starts
//! ([`Scope`], [`consent_scope`]) and read by the same use cases as a
//! listing ([`gather`]: [`crate::access::PatientAccess::list`],
//! [`crate::medication::MedicationRecords::history`]); the FHIR wire
//! format of the files is the server's.

mod bulk;

use std::future::Future;

use carapace_audit::Access;
use carapace_auth::smart::ResourceType;
use carapace_tenancy::{SubjectId, TenantContext};
use time::OffsetDateTime;

use crate::ClinicalError;
use crate::consultation::{ConsentId, Section};
use crate::patient::PatientId;

pub use bulk::{Gathered, Job, MAX_PATIENTS, Scope, consent_scope, gather};

carapace_tenancy::entity_id! {
    /// A bulk export's id.
    pub struct ExportId;
}

/// The resource types an export may hold.
pub const EXPORTABLE: [ResourceType; 3] = [
    ResourceType::Patient,
    ResourceType::MedicationStatement,
    ResourceType::AdverseEvent,
];

/// Where an export stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportStatus {
    /// Being written.
    InProgress,
    /// Done: its files can be downloaded until it expires.
    Complete,
    /// Stopped by an error (its message says what, never PHI).
    Failed,
}

impl ExportStatus {
    /// Stable name (storage).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::InProgress, Self::Complete, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A new export, as asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewExport {
    /// The kick-off request's URL (the manifest's `request`).
    pub request_url: String,
    /// The types asked for (`_type`; all of [`EXPORTABLE`] by default).
    pub types: Vec<ResourceType>,
    /// Only resources changed since (`_since`).
    pub since: Option<OffsetDateTime>,
    /// When its files are deleted.
    pub expires_at: OffsetDateTime,
    /// When it was asked for (the manifest's `transactionTime`).
    pub started_at: OffsetDateTime,
}

/// One file of an export: NDJSON of one resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFile {
    /// Its number within the export (from 1).
    pub n: u32,
    /// The resource type of every line.
    pub resource_type: ResourceType,
    /// How many resources (lines) it holds.
    pub count: u64,
}

/// An export as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportJob {
    /// Its id.
    pub id: ExportId,
    /// Who started it (only they may poll, download or cancel it).
    pub requester: SubjectId,
    /// Where it stands.
    pub status: ExportStatus,
    /// The kick-off request's URL.
    pub request_url: String,
    /// The types asked for.
    pub types: Vec<ResourceType>,
    /// When it was started (the manifest's `transactionTime`).
    pub created_at: OffsetDateTime,
    /// When its files are deleted.
    pub expires_at: OffsetDateTime,
    /// Why it failed.
    pub error: Option<String>,
    /// Its files (once complete).
    pub files: Vec<ExportFile>,
}

/// Exports one subject may have in progress at once (each holds its
/// patients in memory while it runs): a further start is refused with
/// [`ClinicalError::Busy`] (FHIR Bulk Data: 429).
pub const RUNNING_MAX: u64 = 2;

/// How long a caller refused for [`RUNNING_MAX`] is asked to wait.
pub const RUNNING_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an export in progress stays so without its server renewing
/// it ([`ExportRepository::renew`], every [`RENEW_EVERY`]). One not
/// renewed for longer was left by a server that stopped: it is failed
/// ([`ABANDONED`]) and holds no place under [`RUNNING_MAX`].
pub const LEASE: time::Duration = time::Duration::seconds(60);

/// How often the server writing an export renews it.
pub const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Why an abandoned export failed.
pub const ABANDONED: &str = "the server writing the export stopped; start another";
/// Why an export stopped by the kill switch failed.
pub const STOPPED: &str = "stopped by the kill switch; start another once it is off";
/// Why an export failed for anything else while it was written.
pub const FAILED: &str = "the export failed; start another";

/// The reason a failed export gives its requester: the stored one when it
/// is one of the fixed reasons above, else [`FAILED`] (never anything else
/// from storage).
pub fn failure_reason(stored: Option<&str>) -> &'static str {
    [STOPPED, ABANDONED, FAILED]
        .into_iter()
        .find(|known| stored == Some(*known))
        .unwrap_or(FAILED)
}

/// Where an export stored as `status`, last renewed at `renewed_at`,
/// stands at `now`, and why it failed: in progress past its [`LEASE`] is
/// failed, [`ABANDONED`].
pub fn standing(
    status: ExportStatus,
    renewed_at: OffsetDateTime,
    now: OffsetDateTime,
) -> (ExportStatus, Option<&'static str>) {
    if status == ExportStatus::InProgress && now - renewed_at > LEASE {
        return (ExportStatus::Failed, Some(ABANDONED));
    }
    (status, None)
}

/// Where exports and their (sealed) files are kept.
pub trait ExportRepository: Send + Sync {
    /// Starts an export for `access`'s subject (`export.start`), unless the
    /// subject already has [`RUNNING_MAX`] in progress (not expired, nor
    /// past their [`LEASE`]):
    /// then [`ClinicalError::Busy`]. Counting and starting are one step, so
    /// racing starts cannot pass the limit together.
    fn create(
        &self,
        access: &Access,
        new: &NewExport,
    ) -> impl Future<Output = Result<ExportId, ClinicalError>> + Send;

    /// The export `id` of the organization, if it has not expired.
    fn get(
        &self,
        ctx: &TenantContext,
        id: ExportId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<ExportJob>, ClinicalError>> + Send;

    /// Renews export `id`'s [`LEASE`] (its server is still writing it);
    /// `false` if it is no longer in progress.
    fn renew(
        &self,
        ctx: &TenantContext,
        id: ExportId,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// Stores one file (sealed) of an export still in progress.
    fn add_file(
        &self,
        ctx: &TenantContext,
        id: ExportId,
        file: &ExportFile,
        ndjson: &[u8],
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// Ends an export in progress as `status` (with `error` when failed);
    /// `false` if it is no longer in progress (cancelled, or past its [`LEASE`]).
    fn finish(
        &self,
        ctx: &TenantContext,
        id: ExportId,
        status: ExportStatus,
        error: Option<&str>,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// File `n` of export `id`, opened (`export.download`, by `access`).
    fn file(
        &self,
        access: &Access,
        id: ExportId,
        n: u32,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, ClinicalError>> + Send;

    /// Deletes export `id` and its files (`export.delete`); `false` if
    /// there was none.
    fn delete(
        &self,
        access: &Access,
        id: ExportId,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;
}

/// The types a `_type` parameter names (comma-separated); all exportable
/// types when absent. Unknown or unexportable types are refused, naming
/// the parameter.
pub fn requested_types(param: Option<&str>) -> Result<Vec<ResourceType>, ClinicalError> {
    let Some(list) = param else {
        return Ok(EXPORTABLE.to_vec());
    };
    let mut types = Vec::new();
    for name in list.split(',').map(str::trim) {
        match ResourceType::parse(name).filter(|t| EXPORTABLE.contains(t)) {
            Some(t) if !types.contains(&t) => types.push(t),
            Some(_) => {}
            None => {
                return Err(ClinicalError::Invalid(vec![crate::FieldError::new(
                    "_type",
                    "Patient, MedicationStatement and AdverseEvent can be exported",
                )]));
            }
        }
    }
    if types.is_empty() {
        return Err(ClinicalError::Invalid(vec![crate::FieldError::new(
            "_type",
            "name at least one type",
        )]));
    }
    Ok(types)
}

/// The group a `Group/{id}/$export` names: a patient's care team (its
/// patient's compartment) or a consent (what it shares of its patient).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The care team of a patient: `care-team-<patient id>`.
    CareTeam(PatientId),
    /// A consent: `consent-<consent id>`.
    Consent(ConsentId),
}

impl Group {
    /// The group a FHIR id names (the hyphenated uuid after its kind's
    /// prefix); `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let id = |rest: &str| {
            uuid::Uuid::try_parse(rest)
                .ok()
                .filter(|_| rest.len() == 36)
        };
        if let Some(rest) = raw.strip_prefix("care-team-") {
            return id(rest).map(|u| Self::CareTeam(PatientId::from_uuid(u)));
        }
        raw.strip_prefix("consent-")
            .and_then(id)
            .map(|u| Self::Consent(ConsentId::from_uuid(u)))
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CareTeam(p) => write!(f, "care-team-{p}"),
            Self::Consent(c) => write!(f, "consent-{c}"),
        }
    }
}

/// The exportable types that record `sections` cover: demographics the
/// `Patient`, medications its statements and side effects (appointments
/// are not exported).
pub fn shared_types(sections: &[Section]) -> Vec<ResourceType> {
    let mut types = Vec::new();
    for s in sections {
        match s {
            Section::Demographics => types.push(ResourceType::Patient),
            Section::Medications => types.extend([
                ResourceType::MedicationStatement,
                ResourceType::AdverseEvent,
            ]),
            Section::Appointments => {}
        }
    }
    types
}

/// The `requested` types a group that shares `allowed` exports; none in
/// common is refused, naming `_type`.
pub fn narrow(
    requested: &[ResourceType],
    allowed: &[ResourceType],
) -> Result<Vec<ResourceType>, ClinicalError> {
    let kept: Vec<ResourceType> = requested
        .iter()
        .copied()
        .filter(|t| allowed.contains(t))
        .collect();
    if kept.is_empty() {
        return Err(ClinicalError::Invalid(vec![crate::FieldError::new(
            "_type",
            "the group shares none of these types",
        )]));
    }
    Ok(kept)
}

/// Whether `requester` may see export `job` (poll, download, cancel): the
/// subject that started it, nobody else.
pub fn may_follow(job: &ExportJob, requester: &SubjectId) -> bool {
    &job.requester == requester
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_default_to_everything_exportable_and_refuse_the_rest() {
        assert_eq!(requested_types(None).ok(), Some(EXPORTABLE.to_vec()));
        assert_eq!(
            requested_types(Some("Patient,Patient")).ok(),
            Some(vec![ResourceType::Patient])
        );
        for bad in ["", "Observation", "AuditEvent", "Patient,Nope", "patient"] {
            assert!(requested_types(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_export_not_renewed_within_its_lease_is_failed() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        use ExportStatus::{Complete, Failed, InProgress};
        assert_eq!(standing(InProgress, t, t + LEASE), (InProgress, None));
        assert_eq!(
            standing(InProgress, t, t + LEASE + time::Duration::SECOND),
            (Failed, Some(ABANDONED))
        );
        // Only what is in progress can be abandoned.
        for done in [Complete, Failed] {
            assert_eq!(standing(done, t, t + LEASE * 10), (done, None));
        }
        assert!(
            RENEW_EVERY * 3 < LEASE.unsigned_abs(),
            "renewals outpace the lease"
        );
    }

    #[test]
    fn a_failure_gives_only_a_fixed_reason() {
        for known in [STOPPED, ABANDONED, FAILED] {
            assert_eq!(failure_reason(Some(known)), known);
        }
        for other in [None, Some(""), Some("patient Ann Smith: row 7")] {
            assert_eq!(failure_reason(other), FAILED);
        }
    }

    #[test]
    fn groups_are_named_by_kind_and_id() {
        let u = "0190d5a4-0000-7000-8000-000000000001";
        let p = PatientId::from_uuid(uuid::Uuid::parse_str(u).unwrap_or_default());
        let team = Group::parse(&format!("care-team-{u}"));
        assert_eq!(team, Some(Group::CareTeam(p)));
        assert_eq!(team.map(|g| g.to_string()), Some(format!("care-team-{u}")));
        assert!(matches!(
            Group::parse(&format!("consent-{u}")),
            Some(Group::Consent(_))
        ));
        for bad in [
            u,
            "care-team-",
            "consent-x",
            "care-team-0190d5a400007000800000000000000 1",
            "Care-team-0190d5a4-0000-7000-8000-000000000001",
        ] {
            assert_eq!(Group::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn consents_export_only_what_they_share() {
        use ResourceType::{AdverseEvent, MedicationStatement, Patient};
        assert_eq!(shared_types(&[Section::Appointments]), vec![]);
        assert_eq!(
            shared_types(&[Section::Demographics, Section::Medications]),
            vec![Patient, MedicationStatement, AdverseEvent]
        );
        let meds = shared_types(&[Section::Medications]);
        assert_eq!(
            narrow(&EXPORTABLE, &meds).ok(),
            Some(vec![MedicationStatement, AdverseEvent])
        );
        assert!(narrow(&[Patient], &meds).is_err());
        assert!(narrow(&EXPORTABLE, &[]).is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            ExportStatus::InProgress,
            ExportStatus::Complete,
            ExportStatus::Failed,
        ] {
            assert_eq!(ExportStatus::parse(s.as_str()), Some(s));
        }
    }
}
