//! In-memory fakes of the ports the use cases take, for pure unit tests:
//! every repository is confined to the caller's organization like the
//! real ones, and records what it was asked to record.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use carapace_audit::{
    Access, AuditError, AuditEvent, AuditFuture, Origin, Outcome, SecurityEvent, SecurityEventSink,
};
use carapace_auth::{Principal, Role, RoleSet};
use carapace_phi_crypto::Phi;
use carapace_tenancy::{OrgId, OrgSettings, StorageError, SubjectId, TenantContext};
use time::OffsetDateTime;
use time::macros::{date, datetime};

use crate::ClinicalError;
use crate::access::{AuditTrail, Caller};
use crate::patient::{
    CareRole, Demographics, Patient, PatientAdmission, PatientId, PatientLinks, PatientPage,
    PatientPatch, PatientQuery, PatientRepository, RelatedRead,
};

/// A fixed "now" for the tests.
pub(crate) const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

/// Runs a future of the fakes (which never wait) to completion.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A subject named `s`.
pub(crate) fn subject(s: &str) -> SubjectId {
    SubjectId::parse(s).unwrap_or_else(|_| unreachable!("test subject"))
}

/// A principal `name` of `org` with `roles`, signed in with MFA.
pub(crate) fn principal(name: &str, org: OrgId, roles: &[Role]) -> Principal {
    Principal::new(subject(name), org, RoleSet::of(roles)).with_mfa(true)
}

/// `principal` calling with `settings`.
pub(crate) fn caller<'a>(principal: &'a Principal, settings: OrgSettings) -> Caller<'a> {
    static ORIGIN: std::sync::LazyLock<Origin> = std::sync::LazyLock::new(Origin::default);
    Caller {
        principal,
        settings,
        origin: &ORIGIN,
        access: Access::new(
            principal.tenant(),
            carapace_audit::ActorKind::User,
            Origin::default(),
        ),
    }
}

fn patient(org: OrgId, id: PatientId) -> Patient {
    Patient {
        id,
        org,
        demographics: Demographics {
            given_name: Phi::new("Jane".into()),
            family_name: Phi::new("Roe".into()),
            birth_date: Phi::new(date!(1980 - 02 - 03)),
            member_id: None,
            phone: None,
            email: None,
            sex: None,
        },
        created_at: NOW,
        updated_at: NOW,
    }
}

/// Patients of several organizations, their care teams, break-glass grants
/// and account links; what they recorded.
#[derive(Default)]
pub(crate) struct FakePatients {
    /// Patient id → its organization and linked account.
    pub patients: Mutex<HashMap<PatientId, (OrgId, Option<SubjectId>)>>,
    /// (patient, subject) → care role.
    pub teams: Mutex<HashMap<(PatientId, SubjectId), CareRole>>,
    /// (patient, subject) with a live break-glass grant.
    pub glass: Mutex<Vec<(PatientId, SubjectId)>>,
    /// Misses recorded (`record_miss`): patient, action.
    pub misses: Mutex<Vec<(PatientId, String)>>,
    /// Outcomes of the `patient.read` events of related reads.
    pub reads: Mutex<Vec<Outcome>>,
    /// Reads and writes made, as (action, organization of the access).
    pub touched: Mutex<Vec<(&'static str, OrgId)>>,
}

impl FakePatients {
    /// Adds a patient of `org`; its id.
    pub fn add(&self, org: OrgId) -> PatientId {
        let id = PatientId::generate();
        lock(&self.patients).insert(id, (org, None));
        id
    }

    /// Puts `who` in the care team of `id`.
    pub fn join(&self, id: PatientId, who: &str) {
        lock(&self.teams).insert((id, subject(who)), CareRole::Primary);
    }

    /// Links `id` to `who`'s account.
    pub fn link(&self, id: PatientId, who: &str) {
        if let Some(p) = lock(&self.patients).get_mut(&id) {
            p.1 = Some(subject(who));
        }
    }

    /// Grants `who` break-glass access to `id`.
    pub fn break_glass_for(&self, id: PatientId, who: &str) {
        lock(&self.glass).push((id, subject(who)));
    }

    fn facts(&self, org: OrgId, id: PatientId, who: &SubjectId) -> Option<PatientLinks> {
        let (owner, account) = lock(&self.patients).get(&id).cloned()?;
        (owner == org).then(|| PatientLinks {
            care_team: lock(&self.teams).contains_key(&(id, who.clone())),
            break_glass: lock(&self.glass).contains(&(id, who.clone())),
            own_record: account.as_ref() == Some(who),
        })
    }

    fn exists(&self, org: OrgId, id: PatientId) -> bool {
        lock(&self.patients).get(&id).is_some_and(|p| p.0 == org)
    }
}

/// Locks a fake's state (a poisoned lock only follows a failed test).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn unused<T>() -> Result<T, ClinicalError> {
    Err(ClinicalError::Storage(StorageError::Internal(
        "not used by these tests".into(),
    )))
}

impl PatientRepository for FakePatients {
    async fn create(
        &self,
        _: &Access,
        _: &Demographics,
        _: Option<&SubjectId>,
    ) -> Result<Patient, ClinicalError> {
        unused()
    }

    async fn links(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        _: OffsetDateTime,
    ) -> Result<Option<PatientLinks>, ClinicalError> {
        Ok(self.facts(ctx.org(), id, subject))
    }

    async fn assign(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        role: CareRole,
    ) -> Result<bool, ClinicalError> {
        if !self.exists(ctx.org(), id) {
            return Ok(false);
        }
        lock(&self.teams).insert((id, subject.clone()), role);
        Ok(true)
    }

    async fn care_team(
        &self,
        _: &Access,
        _: PatientId,
    ) -> Result<Option<Vec<(SubjectId, CareRole)>>, ClinicalError> {
        unused()
    }

    async fn break_glass(
        &self,
        _: &Access,
        _: PatientId,
        _: &SubjectId,
        _: &Phi<String>,
        _: OffsetDateTime,
    ) -> Result<bool, ClinicalError> {
        unused()
    }

    async fn record_miss(
        &self,
        _: &Access,
        id: PatientId,
        action: &str,
    ) -> Result<(), ClinicalError> {
        lock(&self.misses).push((id, action.to_owned()));
        Ok(())
    }

    async fn link_account(
        &self,
        _: &TenantContext,
        _: PatientId,
        _: Option<&SubjectId>,
    ) -> Result<bool, ClinicalError> {
        unused()
    }

    async fn read_related(
        &self,
        access: &Access,
        id: PatientId,
        subject: &SubjectId,
        _: OffsetDateTime,
        admission: PatientAdmission,
    ) -> Result<RelatedRead, ClinicalError> {
        let org = access.org();
        let Some(links) = self.facts(org, id, subject) else {
            lock(&self.misses).push((id, "patient.read".into()));
            return Ok(RelatedRead::NotFound);
        };
        if admission.admits(links) {
            lock(&self.reads).push(Outcome::Allowed);
            Ok(RelatedRead::Found(patient(org, id)))
        } else {
            lock(&self.reads).push(Outcome::Denied);
            Ok(RelatedRead::Denied(links))
        }
    }

    async fn get(&self, access: &Access, id: PatientId) -> Result<Option<Patient>, ClinicalError> {
        lock(&self.touched).push(("patient.read", access.org()));
        Ok(self
            .exists(access.org(), id)
            .then(|| patient(access.org(), id)))
    }

    async fn update(
        &self,
        _: &Access,
        _: PatientId,
        _: &PatientPatch,
        _: Option<crate::patient::Version>,
    ) -> Result<Option<Patient>, ClinicalError> {
        unused()
    }

    async fn delete(&self, _: &Access, _: PatientId) -> Result<bool, ClinicalError> {
        unused()
    }

    async fn list(&self, _: &Access, _: &PatientQuery) -> Result<PatientPage, ClinicalError> {
        unused()
    }
}

/// The audit trail: every event recorded.
#[derive(Default)]
pub(crate) struct FakeTrail {
    /// The events.
    pub events: Mutex<Vec<AuditEvent>>,
}

impl AuditTrail for FakeTrail {
    async fn record(&self, event: &AuditEvent) -> Result<(), StorageError> {
        lock(&self.events).push(event.clone());
        Ok(())
    }
}

/// Security events; `fail` makes recording fail (fail closed).
#[derive(Default)]
pub(crate) struct FakeEvents {
    /// The events.
    pub events: Mutex<Vec<SecurityEvent>>,
    /// Whether recording fails.
    pub fail: bool,
}

impl SecurityEventSink for FakeEvents {
    fn emit(&self, event: SecurityEvent) -> AuditFuture<'_> {
        Box::pin(async move {
            if self.fail {
                return Err(AuditError(StorageError::Unavailable("down".into())));
            }
            lock(&self.events).push(event);
            Ok(())
        })
    }
}
