//! Who calls a use case, and the use cases that decide whether the caller
//! reaches a patient (ADR 0006): facts from the [`PatientRepository`]
//! port, the decision from [`carapace_auth::policy::authorize_patient`],
//! refusals recorded through the audit ports, a typed answer
//! ([`ClinicalError::NotFound`], [`ClinicalError::Denied`]) that every
//! surface (REST, FHIR, webhooks) maps the same way.

use std::future::Future;

use carapace_audit::{
    Access, AuditEvent, Origin, Outcome, SecurityEvent, SecurityEventKind, SecurityEventSink,
};
use carapace_auth::policy::{
    Decision, DenyReason, PatientListScope, Permission, authorize_access_log, authorize_patient,
    patient_list_scope,
};
use carapace_auth::{Principal, Role};
use carapace_tenancy::{OrgSettings, StorageError};
use time::OffsetDateTime;

use crate::ClinicalError;
use crate::patient::{
    Demographics, Patient, PatientAdmission, PatientId, PatientPage, PatientPatch, PatientQuery,
    PatientRepository, RelatedRead, Version, Visibility,
};

/// Who calls: the principal, their organization's settings as read for
/// this call, where the call came from, and the access their reads and
/// writes are recorded under.
#[derive(Clone, Debug)]
pub struct Caller<'a> {
    /// The authenticated principal.
    pub principal: &'a Principal,
    /// Their organization's access settings.
    pub settings: OrgSettings,
    /// Where the call came from.
    pub origin: &'a Origin,
    /// The access their calls are recorded under.
    pub access: Access,
}

impl Caller<'_> {
    /// A security event of `kind` by this caller.
    pub fn security_event(&self, kind: SecurityEventKind, detail: String) -> SecurityEvent {
        self.principal.security_event(kind, detail, self.origin)
    }
}

/// Where single audit events go when no repository records them in its
/// own transaction (refusals, misses outside a repository). Fails closed:
/// the use case fails when the event cannot be written.
pub trait AuditTrail: Send + Sync {
    /// Appends `event` to its organization's trail.
    fn record(&self, event: &AuditEvent) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// The audit action of `permission` on one patient.
pub fn action_of(permission: Permission) -> &'static str {
    match permission {
        Permission::PatientRead => "patient.read",
        Permission::PatientWrite => "patient.update",
        Permission::PatientDelete => "patient.delete",
        Permission::BreakGlass => "patient.break_glass",
        Permission::AuditRead => "patient.access_log",
        Permission::AppointmentRead => "appointment.read",
        Permission::AppointmentWrite => "appointment.write",
        Permission::SideEffectReport => "side_effect.create",
        Permission::ConsentManage => "consent.manage",
        Permission::Consultation => "referral.create",
        Permission::VerificationManage => "verification.create",
        _ => "patient.access",
    }
}

/// The policy's answers for `caller` and `permission`, for every way they
/// may relate to a patient.
pub fn admission(caller: &Caller<'_>, permission: Permission) -> PatientAdmission {
    let scope = caller.settings.clinician_scope;
    PatientAdmission::from_policy(|links| {
        authorize_patient(caller.principal, permission, links.into(), scope)
    })
}

/// Records a refusal of `what` as a security event and returns it as the
/// typed error ([`ClinicalError::Audit`] when it cannot be recorded).
pub async fn refuse(
    events: &dyn SecurityEventSink,
    caller: &Caller<'_>,
    what: String,
    reason: DenyReason,
) -> ClinicalError {
    let event = caller.security_event(
        SecurityEventKind::AuthorizationDenied,
        format!("{what}: {reason:?}"),
    );
    match events.emit(event).await {
        Ok(()) => ClinicalError::Denied(reason),
        Err(e) => ClinicalError::Audit(e),
    }
}

/// Which patients `caller`'s listings may show: the widest set the policy
/// allows (ADR 0006), applied by the repository in SQL.
pub fn visibility(caller: &Caller<'_>) -> Visibility {
    let subject = caller.principal.subject().clone();
    match patient_list_scope(caller.principal, caller.settings.clinician_scope) {
        PatientListScope::Organization => Visibility::Organization,
        PatientListScope::CareTeam => Visibility::CareTeamOf(subject),
        PatientListScope::OwnRecord => Visibility::OwnRecordOf(subject),
    }
}

/// The ports the patient-access use cases work over.
pub struct PatientAccess<'a, P, T> {
    /// Patients and the facts of how a subject relates to one.
    pub patients: &'a P,
    /// Single audit events.
    pub trail: &'a T,
    /// Security events.
    pub events: &'a dyn SecurityEventSink,
}

impl<P: PatientRepository, T: AuditTrail> PatientAccess<'_, P, T> {
    /// The access under which `caller` may use `permission` on patient
    /// `id`: when they are related to it (care team, break-glass, own
    /// record) or hold an org-wide role. No such patient in their
    /// organization: [`ClinicalError::NotFound`], recorded (and a
    /// cross-tenant attempt as a security event) by the repository.
    /// Unrelated: [`ClinicalError::Denied`], recorded in the audit trail
    /// and as a security event.
    pub async fn reach(
        &self,
        caller: &Caller<'_>,
        id: PatientId,
        permission: Permission,
        now: OffsetDateTime,
    ) -> Result<Access, ClinicalError> {
        let access = &caller.access;
        let action = action_of(permission);
        let Some(links) = self
            .patients
            .links(access.tenant(), id, caller.principal.subject(), now)
            .await?
        else {
            self.patients.record_miss(access, id, action).await?;
            return Err(ClinicalError::NotFound);
        };
        match admission(caller, permission).decision(links) {
            Decision::Allow => Ok(access.clone()),
            Decision::Deny(reason) => {
                let refused = access.event(
                    action,
                    "patient",
                    Some(id.as_uuid().to_string()),
                    Outcome::Denied,
                );
                self.trail.record(&refused).await?;
                Err(refuse(
                    self.events,
                    caller,
                    format!("{permission} on patient {id}"),
                    reason,
                )
                .await)
            }
        }
    }

    /// Registers a patient (`patient.create`); a clinician who registers
    /// one joins its care team.
    pub async fn register(
        &self,
        caller: &Caller<'_>,
        demographics: &Demographics,
    ) -> Result<Patient, ClinicalError> {
        let principal = caller.principal;
        let care_team = principal
            .roles()
            .contains(Role::Clinician)
            .then(|| principal.subject());
        self.patients
            .create(&caller.access, demographics, care_team)
            .await
    }

    /// Applies `patch` to patient `id` for `caller` (`patient:write` and a
    /// relationship, [`Self::reach`]); with `expected`, only while the
    /// patient is at that version ([`ClinicalError::VersionConflict`]).
    pub async fn update(
        &self,
        caller: &Caller<'_>,
        id: PatientId,
        patch: &PatientPatch,
        expected: Option<Version>,
        now: OffsetDateTime,
    ) -> Result<Patient, ClinicalError> {
        let access = self
            .reach(caller, id, Permission::PatientWrite, now)
            .await?;
        self.patients
            .update(&access, id, patch, expected)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// The care team of patient `id`, for a caller who may read it.
    pub async fn care_team(
        &self,
        caller: &Caller<'_>,
        id: PatientId,
        now: OffsetDateTime,
    ) -> Result<Vec<(carapace_tenancy::SubjectId, crate::patient::CareRole)>, ClinicalError> {
        let access = self.reach(caller, id, Permission::PatientRead, now).await?;
        self.patients
            .care_team(&access, id)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Deletes patient `id` for `caller` (`patient:delete` and a
    /// relationship, [`Self::reach`]).
    pub async fn delete(
        &self,
        caller: &Caller<'_>,
        id: PatientId,
        now: OffsetDateTime,
    ) -> Result<(), ClinicalError> {
        let access = self
            .reach(caller, id, Permission::PatientDelete, now)
            .await?;
        if self.patients.delete(&access, id).await? {
            Ok(())
        } else {
            Err(ClinicalError::NotFound)
        }
    }

    /// A page of the patients `query` asks for among those `caller` may
    /// see ([`visibility`]; whatever `query.visibility` said).
    pub async fn list(
        &self,
        caller: &Caller<'_>,
        query: PatientQuery,
    ) -> Result<PatientPage, ClinicalError> {
        let query = PatientQuery {
            visibility: visibility(caller),
            ..query
        };
        self.patients.list(&caller.access, &query).await
    }

    /// The access under which `caller` may read patient `id`'s accounting
    /// of disclosures: the patient themself, and whoever may read the audit
    /// trail. No such patient: [`ClinicalError::NotFound`]; anyone else:
    /// [`ClinicalError::Denied`] (a security event).
    pub async fn reach_access_log(
        &self,
        caller: &Caller<'_>,
        id: PatientId,
        now: OffsetDateTime,
    ) -> Result<Access, ClinicalError> {
        let access = &caller.access;
        let links = self
            .patients
            .links(access.tenant(), id, caller.principal.subject(), now)
            .await?
            .ok_or(ClinicalError::NotFound)?;
        match authorize_access_log(caller.principal, links.into()) {
            Decision::Allow => Ok(access.clone()),
            Decision::Deny(reason) => Err(refuse(
                self.events,
                caller,
                format!("access log of patient {id}"),
                reason,
            )
            .await),
        }
    }

    /// Reads patient `id` for `caller`: facts, decision, audit event and
    /// record in one transaction of the repository (`patient.read`);
    /// [`ClinicalError::NotFound`] or [`ClinicalError::Denied`] (also a
    /// security event) otherwise.
    pub async fn read(
        &self,
        caller: &Caller<'_>,
        id: PatientId,
        now: OffsetDateTime,
    ) -> Result<Patient, ClinicalError> {
        let permission = Permission::PatientRead;
        let admission = admission(caller, permission);
        let read = self
            .patients
            .read_related(
                &caller.access,
                id,
                caller.principal.subject(),
                now,
                admission,
            )
            .await?;
        match read {
            RelatedRead::Found(patient) => Ok(patient),
            // Recorded in the read's own transaction, cross-tenant or not.
            RelatedRead::NotFound => Err(ClinicalError::NotFound),
            RelatedRead::Denied(links) => match admission.decision(links) {
                Decision::Deny(reason) => Err(refuse(
                    self.events,
                    caller,
                    format!("{permission} on patient {id}"),
                    reason,
                )
                .await),
                Decision::Allow => Err(ClinicalError::Storage(StorageError::Internal(
                    "a read was refused on facts its admission allows".into(),
                ))),
            },
        }
    }
}
