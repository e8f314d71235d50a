//! Patients: demographics, their validation, and the repository port.

mod input;

pub use input::{PatientInput, PatientPatchInput, limits, member_id_filter, name_dob_filter};

/// Sex as recorded for care and for de-identified research counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
    /// Another sex.
    Other,
    /// Not known or not stated.
    Unknown,
}

impl Sex {
    /// Every value, in a stable order.
    pub const ALL: [Sex; 4] = [Self::Female, Self::Male, Self::Other, Self::Unknown];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Female => "female",
            Self::Male => "male",
            Self::Other => "other",
            Self::Unknown => "unknown",
        }
    }

    /// The value named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

use std::future::Future;

use carapace_audit::Access;
use carapace_auth::policy::{Decision, PatientRelation};
use carapace_phi_crypto::Phi;
use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use time::{Date, OffsetDateTime};

use crate::ClinicalError;

carapace_tenancy::entity_id! {
    /// A patient's id.
    pub struct PatientId;
}

/// Validated demographics of a patient. Built only by
/// [`PatientInput::parse`] or by a repository reading stored rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demographics {
    /// Given (first) name.
    pub given_name: Phi<String>,
    /// Family (last) name.
    pub family_name: Phi<String>,
    /// Date of birth.
    pub birth_date: Phi<Date>,
    /// Insurance member id.
    pub member_id: Option<Phi<String>>,
    /// Phone number.
    pub phone: Option<Phi<String>>,
    /// E-mail address.
    pub email: Option<Phi<String>>,
    /// Sex.
    pub sex: Option<Phi<Sex>>,
}

/// Changes to apply to a patient: `None` leaves a field alone; for the
/// optional fields `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatientPatch {
    /// New given name.
    pub given_name: Option<Phi<String>>,
    /// New family name.
    pub family_name: Option<Phi<String>>,
    /// New date of birth.
    pub birth_date: Option<Phi<Date>>,
    /// New or cleared member id.
    pub member_id: Option<Option<Phi<String>>>,
    /// New or cleared phone.
    pub phone: Option<Option<Phi<String>>>,
    /// New or cleared e-mail.
    pub email: Option<Option<Phi<String>>>,
    /// New or cleared sex.
    pub sex: Option<Option<Phi<Sex>>>,
}

impl PatientPatch {
    /// The patch that replaces every field with `d`'s (a whole-record
    /// update, FHIR's `PUT`): optional fields `d` lacks are cleared.
    pub fn replacing(d: Demographics) -> Self {
        Self {
            given_name: Some(d.given_name),
            family_name: Some(d.family_name),
            birth_date: Some(d.birth_date),
            member_id: Some(d.member_id),
            phone: Some(d.phone),
            email: Some(d.email),
            sex: Some(d.sex),
        }
    }
}

/// Names of the PHI fields of a patient record, as audit events list them.
pub const PHI_FIELDS: [&str; 7] = [
    "given_name",
    "family_name",
    "birth_date",
    "member_id",
    "phone",
    "email",
    "sex",
];

impl PatientPatch {
    /// The names of the fields this patch changes.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            self.given_name.is_some(),
            self.family_name.is_some(),
            self.birth_date.is_some(),
            self.member_id.is_some(),
            self.phone.is_some(),
            self.email.is_some(),
            self.sex.is_some(),
        ]
        .into_iter()
        .zip(PHI_FIELDS)
        .filter_map(|(changed, name)| changed.then_some(name))
        .collect()
    }

    /// Applies the patch to `d`.
    pub fn apply(&self, d: &mut Demographics) {
        if let Some(v) = &self.given_name {
            d.given_name = v.clone();
        }
        if let Some(v) = &self.family_name {
            d.family_name = v.clone();
        }
        if let Some(v) = &self.birth_date {
            d.birth_date = v.clone();
        }
        if let Some(v) = &self.member_id {
            d.member_id = v.clone();
        }
        if let Some(v) = &self.phone {
            d.phone = v.clone();
        }
        if let Some(v) = &self.email {
            d.email = v.clone();
        }
        if let Some(v) = &self.sex {
            d.sex = v.clone();
        }
    }
}

/// A stored patient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patient {
    /// Its id.
    pub id: PatientId,
    /// The organization it belongs to.
    pub org: OrgId,
    /// Its demographics.
    pub demographics: Demographics,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was last changed.
    pub updated_at: OffsetDateTime,
}

impl Patient {
    /// Its current version.
    pub fn version(&self) -> Version {
        Version::of(self.updated_at)
    }
}

/// A version of a record (FHIR's `meta.versionId`, an `ETag`): the instant
/// of its last change in microseconds since the epoch. Repositories keep
/// it strictly increasing per record, so every change makes a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(i64);

impl Version {
    /// The version of a record last changed at `updated_at`.
    pub fn of(updated_at: OffsetDateTime) -> Self {
        let micros = updated_at.unix_timestamp_nanos() / 1_000;
        Self(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// A version as [`std::fmt::Display`] writes it (decimal digits); `None`
    /// for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().map(Self)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How many items one page holds: 1 to [`PageLimit::MAX`], default
/// [`PageLimit::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimit(u16);

impl PageLimit {
    /// Largest page.
    pub const MAX: u16 = 100;
    /// Page size when none is asked for.
    pub const DEFAULT: u16 = 50;

    /// Parses a page size given as text (a query parameter).
    pub fn parse_text(requested: Option<&str>) -> Result<Self, ClinicalError> {
        match requested {
            None => Ok(Self(Self::DEFAULT)),
            Some(t) => match t.parse::<u32>() {
                Ok(n) => Self::parse(Some(n)),
                Err(_) => Self::parse(Some(0)),
            },
        }
    }

    /// Parses a requested page size.
    pub fn parse(requested: Option<u32>) -> Result<Self, ClinicalError> {
        match requested {
            None => Ok(Self(Self::DEFAULT)),
            Some(n) if (1..=u32::from(Self::MAX)).contains(&n) => {
                Ok(Self(u16::try_from(n).unwrap_or(Self::MAX)))
            }
            Some(_) => Err(ClinicalError::Invalid(vec![crate::FieldError::new(
                "limit",
                format!("must be between 1 and {}", Self::MAX),
            )])),
        }
    }

    /// The size.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(Self::DEFAULT)
    }
}

/// Which patients a listing may show. The default shows nothing: callers
/// state the widest set the policy allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Visibility {
    /// None (fail closed).
    #[default]
    Nothing,
    /// Every patient of the organization.
    Organization,
    /// Patients whose care team includes this subject, or for whom it holds
    /// an unexpired break-glass grant.
    CareTeamOf(SubjectId),
    /// The patient record linked to this subject's account.
    OwnRecordOf(SubjectId),
}

/// A practitioner's role in a patient's care team.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CareRole {
    /// Responsible for the patient's care (default).
    #[default]
    Primary,
    /// Consulted on the patient's care.
    Consulting,
}

impl CareRole {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Consulting => "consulting",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Primary, Self::Consulting]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// How one subject relates to one patient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatientLinks {
    /// The subject is in the patient's care team.
    pub care_team: bool,
    /// The subject holds an unexpired break-glass grant for the patient.
    pub break_glass: bool,
    /// The record is the subject's own (patient access).
    pub own_record: bool,
}

impl From<PatientLinks> for PatientRelation {
    fn from(links: PatientLinks) -> Self {
        Self {
            care_team: links.care_team,
            break_glass: links.break_glass,
            own_record: links.own_record,
        }
    }
}

/// The access policy's answer for one caller and one permission, worked
/// out in advance for each of the eight ways the caller may relate to a
/// patient. It is data, like [`Visibility`] for listings: a repository
/// applies it to the facts it reads, in the transaction that reads them
/// and records the outcome, and reports those facts; it runs no caller
/// code. Built by the use cases in [`crate::access`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatientAdmission([Decision; 8]);

impl PatientAdmission {
    /// The answers of `policy` (a pure function of the facts).
    pub fn from_policy(policy: impl Fn(PatientLinks) -> Decision) -> Self {
        Self(std::array::from_fn(|i| {
            policy(PatientLinks {
                care_team: i & 1 != 0,
                break_glass: i & 2 != 0,
                own_record: i & 4 != 0,
            })
        }))
    }

    /// The decision for a caller related to the patient by `links`.
    pub fn decision(&self, links: PatientLinks) -> Decision {
        let i = usize::from(links.care_team)
            | usize::from(links.break_glass) << 1
            | usize::from(links.own_record) << 2;
        self.0.get(i).copied().unwrap_or(Decision::Deny(
            carapace_auth::policy::DenyReason::MissingPermission(
                carapace_auth::policy::Permission::PatientRead,
            ),
        ))
    }

    /// Whether a caller related by `links` is admitted.
    pub fn admits(&self, links: PatientLinks) -> bool {
        self.decision(links) == Decision::Allow
    }
}

/// What a related read found: facts, the patient only when admitted.
#[derive(Clone, Debug)]
pub enum RelatedRead {
    /// No such patient in the caller's organization (recorded `not_found`).
    NotFound,
    /// The admission refused the caller (recorded `denied`); nothing was
    /// returned but the facts it was refused on.
    Denied(PatientLinks),
    /// Admitted and read (recorded `allowed`).
    Found(Patient),
}

/// Longest break-glass reason, in characters.
pub const BREAK_GLASS_REASON_MAX: usize = 1000;
/// Shortest break-glass reason, in characters.
pub const BREAK_GLASS_REASON_MIN: usize = 20;

/// Checks a break-glass reason: 20-1000 characters of real text.
pub fn break_glass_reason(raw: &str) -> Result<Phi<String>, ClinicalError> {
    let reason = raw.trim();
    let n = reason.chars().count();
    if !(BREAK_GLASS_REASON_MIN..=BREAK_GLASS_REASON_MAX).contains(&n)
        || reason.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(ClinicalError::Invalid(vec![crate::FieldError::new(
            "reason",
            format!("must be {BREAK_GLASS_REASON_MIN} to {BREAK_GLASS_REASON_MAX} characters"),
        )]));
    }
    Ok(Phi::new(reason.to_owned()))
}

/// A patient listing request.
#[derive(Clone, Debug, Default)]
pub struct PatientQuery {
    /// Which patients may appear at all.
    pub visibility: Visibility,
    /// Only patients with exactly this member id.
    pub member_id: Option<Phi<String>>,
    /// Only patients with exactly this family name and birth date.
    pub name_dob: Option<(Phi<String>, Phi<Date>)>,
    /// Page size.
    pub limit: PageLimit,
    /// Continue after this patient (ids ascend).
    pub after: Option<PatientId>,
    /// Only patients last changed within these bounds.
    pub updated: UpdatedWithin,
}

/// Bounds on when a record was last changed (FHIR `_lastUpdated`); each
/// bound inclusive when its flag says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdatedWithin {
    /// Changed at or after (`true`), or strictly after (`false`).
    pub after: Option<(OffsetDateTime, bool)>,
    /// Changed at or before (`true`), or strictly before (`false`).
    pub before: Option<(OffsetDateTime, bool)>,
}

/// One page of patients.
#[derive(Clone, Debug)]
pub struct PatientPage {
    /// The patients, in ascending id order.
    pub items: Vec<Patient>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<PatientId>,
}

/// The scope name that binds pagination cursors to patient listings.
pub const CURSOR_SCOPE: &str = "patients";

/// Storage of patients. Every method is confined to `ctx`'s organization:
/// another organization's patient is indistinguishable from a missing one.
/// Storage of patients. Every method is confined to the caller's
/// organization: another organization's patient is indistinguishable from
/// a missing one. Methods that read or write PHI take an [`Access`] and
/// record their audit event in the same transaction as the data access; if
/// the event cannot be written, the call fails and returns no PHI.
pub trait PatientRepository: Send + Sync {
    /// Stores a new patient (`patient.create`); `care_team` (the creating clinician) joins its
    /// care team in the same transaction.
    fn create(
        &self,
        access: &Access,
        patient: &Demographics,
        care_team: Option<&SubjectId>,
    ) -> impl Future<Output = Result<Patient, ClinicalError>> + Send;

    /// How `subject` relates to the patient at `now`; `None` if there is no
    /// such patient.
    fn links(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<PatientLinks>, ClinicalError>> + Send;

    /// Adds `subject` to the patient's care team in `role` (or changes its
    /// role); `false` if no such patient.
    fn assign(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        role: CareRole,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// The patient's care team (`patient.care_team`); `None` if no such
    /// patient.
    fn care_team(
        &self,
        access: &Access,
        id: PatientId,
    ) -> impl Future<Output = Result<Option<Vec<(SubjectId, CareRole)>>, ClinicalError>> + Send;

    /// Records a break-glass grant for `subject` until `until`
    /// (`patient.break_glass`); `false` if no such patient.
    fn break_glass(
        &self,
        access: &Access,
        id: PatientId,
        subject: &SubjectId,
        reason: &Phi<String>,
        until: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// Records that `access` asked for patient `id` (to do `action`) and
    /// its organization has none: a `not_found` audit event and, when a
    /// patient of that id exists in another organization, a cross-tenant
    /// security event (and its alert). One transaction with the same
    /// statements either way, so neither the answer nor its timing tells a
    /// foreign id from a random one.
    fn record_miss(
        &self,
        access: &Access,
        id: PatientId,
        action: &str,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// Links (or unlinks) the patient record to a patient's own account.
    fn link_account(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        account: Option<&SubjectId>,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// Reads a patient if `admission` admits `subject` as it relates to
    /// the patient at `now`: relationship facts, audit event
    /// (`patient.read`: allowed, denied or not found) and data in one
    /// transaction, so the hot read path costs what its SQL costs. The
    /// admission is the policy's answer computed in advance (data); the
    /// repository reports the facts it applied it to.
    fn read_related(
        &self,
        access: &Access,
        id: PatientId,
        subject: &SubjectId,
        now: OffsetDateTime,
        admission: PatientAdmission,
    ) -> impl Future<Output = Result<RelatedRead, ClinicalError>> + Send;

    /// Reads a patient (`patient.read`; `not_found` when there is none).
    fn get(
        &self,
        access: &Access,
        id: PatientId,
    ) -> impl Future<Output = Result<Option<Patient>, ClinicalError>> + Send;

    /// Applies `patch` (`patient.update`); `None` if there is no such
    /// patient; [`ClinicalError::VersionConflict`] (nothing written) when
    /// `expected` is given and the patient is at another version.
    fn update(
        &self,
        access: &Access,
        id: PatientId,
        patch: &PatientPatch,
        expected: Option<Version>,
    ) -> impl Future<Output = Result<Option<Patient>, ClinicalError>> + Send;

    /// Deletes a patient (`patient.delete`); `false` if there was none.
    fn delete(
        &self,
        access: &Access,
        id: PatientId,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// Lists patients page by page (`patient.list`, one event per patient
    /// shown, or one without a resource when none is).
    fn list(
        &self,
        access: &Access,
        query: &PatientQuery,
    ) -> impl Future<Output = Result<PatientPage, ClinicalError>> + Send;
}

#[cfg(test)]
mod tests;
