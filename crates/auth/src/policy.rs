//! Pure authorization: the permission set, the role → permission matrix
//! (data, mirrored in `docs/permissions.md` by a test), and
//! [`authorize`]. Deny by default: anything not granted here is refused.

mod matrix;

use carapace_tenancy::{ClinicianScope, PhiMfa};

use crate::smart::{Interaction, Reach, ResourceType};
use crate::{Principal, Role};

use Permission::{AppointmentRead, AuditRead, PatientRead};
pub use matrix::{MATRIX, Permission, matrix_markdown, permissions_of};

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No role of the principal grants the permission.
    MissingPermission(Permission),
    /// Granted, but only to an MFA session: step up and retry.
    StepUpRequired(Permission),
    /// Granted for related patients only, and this one is not related.
    NoRelationship(Permission),
    /// Granted to the roles, but outside the token's SMART scopes.
    OutOfScope(Permission),
}

/// The outcome of [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse, for this reason.
    Deny(DenyReason),
}

/// Whether `principal` may use `permission` in its own organization.
///
/// MFA step-up: administrative operations always need an MFA session, and
/// so does PHI access by a principal whose only grant comes from `admin`.
/// A token with SMART scopes needs one that covers the permission
/// ([`crate::smart`]): scopes narrow the roles, never widen them.
pub fn authorize(principal: &Principal, permission: Permission) -> Decision {
    if let Decision::Deny(reason) = authorize_roles(principal, permission) {
        return Decision::Deny(reason);
    }
    match scope_reach(principal.scopes(), permission) {
        Some(_) => Decision::Allow,
        None => Decision::Deny(DenyReason::OutOfScope(permission)),
    }
}

/// Whether `principal`'s token scopes allow `interaction` on `resource`
/// (after [`authorize`] allowed the permission the route needs): how a
/// FHIR interaction is checked against `user/Patient.rs`-style scopes,
/// one letter at a time.
pub fn authorize_interaction(
    principal: &Principal,
    permission: Permission,
    resource: ResourceType,
    interaction: Interaction,
) -> Decision {
    match principal.scopes().reach(resource, interaction) {
        Some(_) => Decision::Allow,
        None => Decision::Deny(DenyReason::OutOfScope(permission)),
    }
}

/// The FHIR interactions a permission stands for (any one of them lets a
/// SMART scope cover it). Permissions without a FHIR counterpart
/// (administration, break-glass, analytics, the assistant) have none: a
/// token with SMART scopes never holds them.
pub fn interactions_of(permission: Permission) -> &'static [(ResourceType, Interaction)] {
    use Interaction::{Create, Delete, Read, Search, Update};
    use ResourceType as T;
    match permission {
        Permission::PatientRead => &[(T::Patient, Read), (T::Patient, Search)],
        Permission::PatientWrite => &[(T::Patient, Create), (T::Patient, Update)],
        Permission::PatientDelete => &[(T::Patient, Delete)],
        Permission::AuditRead => &[(T::AuditEvent, Read), (T::AuditEvent, Search)],
        Permission::AppointmentRead => &[(T::Appointment, Read), (T::Appointment, Search)],
        Permission::AppointmentWrite => &[(T::Appointment, Create), (T::Appointment, Update)],
        Permission::SideEffectReport => &[(T::AdverseEvent, Create)],
        Permission::ConsentManage => &[
            (T::Consent, Create),
            (T::Consent, Read),
            (T::Consent, Update),
            (T::Consent, Search),
        ],
        Permission::Consultation => &[
            (T::ServiceRequest, Create),
            (T::ServiceRequest, Read),
            (T::ServiceRequest, Search),
        ],
        Permission::VerificationManage | Permission::VerificationWork => &[
            (T::Task, Create),
            (T::Task, Read),
            (T::Task, Update),
            (T::Task, Search),
        ],
        _ => &[],
    }
}

/// How far `scopes` let `permission` reach: the widest reach of any
/// interaction it stands for ([`interactions_of`]). Without SMART scopes,
/// as far as the roles; a permission with no FHIR counterpart is outside
/// every SMART scope.
pub fn scope_reach(scopes: &crate::smart::Scopes, permission: Permission) -> Option<Reach> {
    if !scopes.is_restricted() {
        return Some(Reach::Roles);
    }
    interactions_of(permission)
        .iter()
        .filter_map(|(resource, i)| scopes.reach(*resource, *i))
        .max()
}

/// Whether the token's scopes confine `permission` to the patient record
/// linked to the user (`patient/` scopes only).
fn own_record_only(principal: &Principal, permission: Permission) -> bool {
    scope_reach(principal.scopes(), permission) == Some(Reach::OwnRecord)
}

fn authorize_roles(principal: &Principal, permission: Permission) -> Decision {
    let granting: Vec<Role> = principal
        .roles()
        .iter()
        .filter(|r| permissions_of(*r).contains(&permission))
        .collect();
    if granting.is_empty() {
        return Decision::Deny(DenyReason::MissingPermission(permission));
    }
    let admin_only = granting.iter().all(|r| *r == Role::Admin);
    let needs_mfa = permission.is_admin_operation() || (permission.is_phi() && admin_only);
    if needs_mfa && !principal.mfa() {
        return Decision::Deny(DenyReason::StepUpRequired(permission));
    }
    Decision::Allow
}

/// Roles whose patient permissions reach every patient of the organization.
const ORG_WIDE: [Role; 3] = [Role::Admin, Role::Staff, Role::Viewer];

/// How a principal relates to one patient record (facts from storage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatientRelation {
    /// The principal is in the patient's care team.
    pub care_team: bool,
    /// The principal holds an unexpired break-glass grant for the patient.
    pub break_glass: bool,
    /// The record is the principal's own.
    pub own_record: bool,
}

/// Whether `principal` may use `permission` on one patient record.
/// Org-wide roles reach every patient; clinicians their care team (and
/// break-glass grants), or everyone when the organization says so;
/// patients their own record.
pub fn authorize_patient(
    principal: &Principal,
    permission: Permission,
    relation: PatientRelation,
    scope: ClinicianScope,
) -> Decision {
    if let Decision::Deny(reason) = authorize(principal, permission) {
        return Decision::Deny(reason);
    }
    if own_record_only(principal, permission) {
        return if relation.own_record {
            Decision::Allow
        } else {
            Decision::Deny(DenyReason::OutOfScope(permission))
        };
    }
    let grants = |r: Role| principal.roles().contains(r) && permissions_of(r).contains(&permission);
    let allowed = ORG_WIDE.iter().any(|r| grants(*r))
        || (grants(Role::Clinician)
            && (scope == ClinicianScope::Organization
                || relation.care_team
                || relation.break_glass))
        || (grants(Role::Patient) && relation.own_record);
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny(DenyReason::NoRelationship(permission))
    }
}

/// Whether `principal` may read the accounting of disclosures (access
/// log) of one patient: whoever may read the audit trail (compliance,
/// admin), and the patient themself for their own record. Nobody else, not
/// even the patient's clinicians.
pub fn authorize_access_log(principal: &Principal, relation: PatientRelation) -> Decision {
    if authorize(principal, AuditRead) == Decision::Allow
        || (principal.roles().contains(Role::Patient) && relation.own_record)
    {
        Decision::Allow
    } else {
        Decision::Deny(DenyReason::MissingPermission(AuditRead))
    }
}

/// The organization's extra MFA rule for PHI: with
/// [`PhiMfa::AllStaff`], every non-patient session needs MFA to reach PHI.
/// A principal whose only role is `service` (a bot's key, which cannot do
/// MFA and holds only `verification:work`) is not a staff session; a key
/// that also carries a staff role is.
pub fn require_phi_mfa(principal: &Principal, phi_mfa: PhiMfa) -> Decision {
    let staff = principal
        .roles()
        .iter()
        .any(|r| r != Role::Patient && r != Role::Service);
    if phi_mfa == PhiMfa::AllStaff && staff && !principal.mfa() {
        Decision::Deny(DenyReason::StepUpRequired(PatientRead))
    } else {
        Decision::Allow
    }
}

/// Whether `principal` may change its own credentials (password, second
/// factor, recovery codes, e-mail). An impersonated session never may: the
/// change would outlive the impersonation, and the administrator would
/// hold the target's factor.
pub fn may_change_own_credentials(principal: &Principal) -> bool {
    principal.actor().is_none()
}

/// Whether `principal` may see the schedule (appointments and free slots)
/// of `practitioner`: org-wide roles see every schedule, a practitioner
/// their own. Patients see their own appointments through their record.
pub fn authorize_schedule(
    principal: &Principal,
    practitioner: &carapace_tenancy::SubjectId,
) -> Decision {
    if let Decision::Deny(reason) = authorize(principal, AppointmentRead) {
        return Decision::Deny(reason);
    }
    let reads =
        |r: Role| principal.roles().contains(r) && permissions_of(r).contains(&AppointmentRead);
    if own_record_only(principal, AppointmentRead) {
        return Decision::Deny(DenyReason::OutOfScope(AppointmentRead));
    }
    if ORG_WIDE.iter().any(|r| reads(*r)) || principal.subject() == practitioner {
        Decision::Allow
    } else {
        Decision::Deny(DenyReason::NoRelationship(AppointmentRead))
    }
}

/// Whether an account with `roles` may be a practitioner (join a care
/// team, be booked): clinicians only.
pub fn may_practise(roles: crate::RoleSet) -> bool {
    roles.contains(Role::Clinician)
}

/// Whose appointments a listing by `principal` without a patient or
/// practitioner filter may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleScope {
    /// Every appointment of the organization (org-wide roles).
    Organization,
    /// The principal's own schedule (clinicians).
    Own,
}

/// The default appointment listing of `principal`; `None` when it must
/// name a patient (patients list through their own record).
pub fn schedule_scope(principal: &Principal) -> Option<ScheduleScope> {
    let reads =
        |r: Role| principal.roles().contains(r) && permissions_of(r).contains(&AppointmentRead);
    if own_record_only(principal, AppointmentRead) {
        None
    } else if ORG_WIDE.iter().any(|r| reads(*r)) {
        Some(ScheduleScope::Organization)
    } else if reads(Role::Clinician) {
        Some(ScheduleScope::Own)
    } else {
        None
    }
}

/// Which patients a listing by `principal` may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatientListScope {
    /// Every patient of the organization.
    Organization,
    /// The care team's patients (and break-glass grants).
    CareTeam,
    /// The principal's own record.
    OwnRecord,
}

/// The widest listing `principal` may see (after [`authorize`] allowed
/// `patient:read`).
pub fn patient_list_scope(principal: &Principal, scope: ClinicianScope) -> PatientListScope {
    let reads = |r: Role| principal.roles().contains(r) && permissions_of(r).contains(&PatientRead);
    if own_record_only(principal, PatientRead) {
        PatientListScope::OwnRecord
    } else if ORG_WIDE.iter().any(|r| reads(*r))
        || (reads(Role::Clinician) && scope == ClinicianScope::Organization)
    {
        PatientListScope::Organization
    } else if reads(Role::Clinician) {
        PatientListScope::CareTeam
    } else {
        PatientListScope::OwnRecord
    }
}

#[cfg(test)]
mod tests;
