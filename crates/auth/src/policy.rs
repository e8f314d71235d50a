//! Pure authorization: the permission set, the role → permission matrix
//! (data, mirrored in `docs/permissions.md` by a test), and
//! [`authorize`]. Deny by default: anything not granted here is refused.

use std::fmt;

use carapace_tenancy::{ClinicianScope, PhiMfa};

use crate::{Principal, Role};

/// Something a caller may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Permission {
    /// Read patient records of the organization.
    PatientRead,
    /// Create and change patient records.
    PatientWrite,
    /// Delete patient records.
    PatientDelete,
    /// Administer the organization's users.
    UserAdmin,
    /// Create, list and revoke service keys.
    ServiceKeyAdmin,
    /// Read the audit trail.
    AuditRead,
    /// Turn the kill switch on or off.
    KillSwitchWrite,
    /// Manage care teams and link patient records to patients' accounts.
    CareAdmin,
    /// Change the organization's access settings.
    OrgAdmin,
    /// Declare emergency (break-glass) access to a patient outside one's
    /// care team: a written reason, an hour, recorded and alerted.
    BreakGlass,
    /// Read appointments (of related patients) and practitioners'
    /// availability.
    AppointmentRead,
    /// Book, move, cancel, complete appointments and set reminder
    /// preferences (of related patients).
    AppointmentWrite,
    /// Report a side effect (of a related patient, or one's own).
    SideEffectReport,
    /// Read organization-wide clinical aggregates (small cells withheld).
    ClinicalAnalytics,
    /// Record, list and withdraw a patient's sharing consents (of a
    /// related patient, or one's own).
    ConsentManage,
    /// Refer a related patient to another clinician under a consent, and
    /// read what is shared with oneself.
    Consultation,
    /// Create, follow and cancel prior-authorization verification tasks
    /// and read their transcripts.
    VerificationManage,
    /// Work verification tasks as a bot: claim, minimal view, progress,
    /// transcript upload (service keys).
    VerificationWork,
    /// Use the AI assistant (where both BAAs are in place).
    AssistantUse,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 19] = [
        Permission::PatientRead,
        Permission::PatientWrite,
        Permission::PatientDelete,
        Permission::UserAdmin,
        Permission::ServiceKeyAdmin,
        Permission::AuditRead,
        Permission::KillSwitchWrite,
        Permission::CareAdmin,
        Permission::OrgAdmin,
        Permission::BreakGlass,
        Permission::AppointmentRead,
        Permission::AppointmentWrite,
        Permission::SideEffectReport,
        Permission::ClinicalAnalytics,
        Permission::ConsentManage,
        Permission::Consultation,
        Permission::VerificationManage,
        Permission::VerificationWork,
        Permission::AssistantUse,
    ];

    /// The permission's name, `resource:action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::PatientRead => "patient:read",
            Permission::PatientWrite => "patient:write",
            Permission::PatientDelete => "patient:delete",
            Permission::UserAdmin => "user:admin",
            Permission::ServiceKeyAdmin => "service_key:admin",
            Permission::AuditRead => "audit:read",
            Permission::KillSwitchWrite => "kill_switch:write",
            Permission::CareAdmin => "care:admin",
            Permission::OrgAdmin => "org:admin",
            Permission::BreakGlass => "patient:break_glass",
            Permission::AppointmentRead => "appointment:read",
            Permission::AppointmentWrite => "appointment:write",
            Permission::SideEffectReport => "side_effect:report",
            Permission::ClinicalAnalytics => "clinical_analytics:read",
            Permission::ConsentManage => "consent:manage",
            Permission::Consultation => "consultation",
            Permission::VerificationManage => "verification:manage",
            Permission::VerificationWork => "verification:work",
            Permission::AssistantUse => "assistant:use",
        }
    }

    /// Whether it touches PHI.
    pub fn is_phi(self) -> bool {
        matches!(
            self,
            Permission::PatientRead
                | Permission::PatientWrite
                | Permission::PatientDelete
                | Permission::AppointmentRead
                | Permission::AppointmentWrite
                | Permission::SideEffectReport
                | Permission::ConsentManage
                | Permission::Consultation
                | Permission::VerificationManage
                | Permission::VerificationWork
        )
    }

    /// Whether it is an administrative operation (always needs MFA).
    pub fn is_admin_operation(self) -> bool {
        matches!(
            self,
            Permission::UserAdmin
                | Permission::ServiceKeyAdmin
                | Permission::KillSwitchWrite
                | Permission::CareAdmin
                | Permission::OrgAdmin
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Permission::{
    AppointmentRead, AppointmentWrite, AuditRead, BreakGlass, CareAdmin, ClinicalAnalytics,
    KillSwitchWrite, OrgAdmin, PatientDelete, PatientRead, PatientWrite, ServiceKeyAdmin,
    SideEffectReport, UserAdmin,
};
use Permission::{AssistantUse, ConsentManage, Consultation, VerificationManage, VerificationWork};

/// The role → permission matrix. Patient permissions of `clinician` reach
/// the care team only and `patient`'s its own record only: see
/// [`authorize_patient`].
pub const MATRIX: &[(Role, &[Permission])] = &[
    (
        Role::Admin,
        &[
            PatientRead,
            PatientWrite,
            PatientDelete,
            UserAdmin,
            ServiceKeyAdmin,
            AuditRead,
            KillSwitchWrite,
            CareAdmin,
            OrgAdmin,
            AppointmentRead,
            AppointmentWrite,
            SideEffectReport,
            ClinicalAnalytics,
            ConsentManage,
            VerificationManage,
            AssistantUse,
        ],
    ),
    (
        Role::Clinician,
        &[
            PatientRead,
            PatientWrite,
            BreakGlass,
            AppointmentRead,
            AppointmentWrite,
            SideEffectReport,
            ConsentManage,
            Consultation,
            AssistantUse,
        ],
    ),
    (
        Role::Staff,
        &[
            PatientRead,
            AppointmentRead,
            AppointmentWrite,
            VerificationManage,
            AssistantUse,
        ],
    ),
    (Role::Viewer, &[PatientRead, AppointmentRead]),
    (
        Role::Patient,
        &[
            PatientRead,
            AppointmentRead,
            AppointmentWrite,
            SideEffectReport,
            ConsentManage,
            Consultation,
        ],
    ),
    (Role::Compliance, &[AuditRead, ClinicalAnalytics]),
    (Role::Service, &[VerificationWork]),
];

/// The permissions a role grants.
pub fn permissions_of(role: Role) -> &'static [Permission] {
    MATRIX
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(&[], |(_, p)| p)
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No role of the principal grants the permission.
    MissingPermission(Permission),
    /// Granted, but only to an MFA session: step up and retry.
    StepUpRequired(Permission),
    /// Granted for related patients only, and this one is not related.
    NoRelationship(Permission),
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
pub fn authorize(principal: &Principal, permission: Permission) -> Decision {
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
    if ORG_WIDE.iter().any(|r| reads(*r)) {
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
    if ORG_WIDE.iter().any(|r| reads(*r))
        || (reads(Role::Clinician) && scope == ClinicianScope::Organization)
    {
        PatientListScope::Organization
    } else if reads(Role::Clinician) {
        PatientListScope::CareTeam
    } else {
        PatientListScope::OwnRecord
    }
}

/// The matrix as the Markdown table in `docs/permissions.md`.
pub fn matrix_markdown() -> String {
    let mut out = String::from("| role |");
    for p in Permission::ALL {
        out.push_str(&format!(" `{p}` |"));
    }
    out.push_str("\n| --- |");
    for _ in Permission::ALL {
        out.push_str(" :-: |");
    }
    for role in Role::ALL {
        out.push_str(&format!("\n| `{role}` |"));
        for p in Permission::ALL {
            let granted = permissions_of(role).contains(&p);
            let mfa = p.is_admin_operation() || (p.is_phi() && role == Role::Admin);
            let cell = match (granted, mfa, role) {
                (false, _, _) => " — |",
                (true, true, _) => " yes (MFA) |",
                (true, false, Role::Clinician) if p.is_phi() => " care team |",
                (true, false, Role::Patient) if p.is_phi() => " own record |",
                (true, false, _) => " yes |",
            };
            out.push_str(cell);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoleSet;
    use carapace_tenancy::{OrgId, SubjectId};

    fn principal(roles: &[Role], mfa: bool) -> Principal {
        let subject = SubjectId::parse("u1").unwrap_or_else(|_| unreachable!());
        Principal::new(subject, OrgId::generate(), RoleSet::of(roles)).with_mfa(mfa)
    }

    #[test]
    fn schedules_are_for_org_wide_roles_and_their_own_practitioner() {
        let ada = SubjectId::parse("u1").unwrap_or_else(|_| unreachable!());
        let bob = SubjectId::parse("bob").unwrap_or_else(|_| unreachable!());
        let clinician = principal(&[Role::Clinician], false);
        assert_eq!(authorize_schedule(&clinician, &ada), Decision::Allow);
        assert_eq!(
            authorize_schedule(&clinician, &bob),
            Decision::Deny(DenyReason::NoRelationship(AppointmentRead))
        );
        assert_eq!(
            authorize_schedule(&principal(&[Role::Staff], false), &bob),
            Decision::Allow
        );
        assert_eq!(
            authorize_schedule(&principal(&[Role::Patient], false), &bob),
            Decision::Deny(DenyReason::NoRelationship(AppointmentRead))
        );
        assert_eq!(
            authorize_schedule(&principal(&[Role::Compliance], true), &bob),
            Decision::Deny(DenyReason::MissingPermission(AppointmentRead))
        );
        assert_eq!(schedule_scope(&clinician), Some(ScheduleScope::Own));
        assert_eq!(
            schedule_scope(&principal(&[Role::Viewer], false)),
            Some(ScheduleScope::Organization)
        );
        assert_eq!(schedule_scope(&principal(&[Role::Patient], false)), None);
    }

    #[test]
    fn only_clinicians_practise() {
        assert!(may_practise(RoleSet::of(&[Role::Staff, Role::Clinician])));
        assert!(!may_practise(RoleSet::of(&[Role::Admin])));
        assert!(!may_practise(RoleSet::of(&[Role::Patient])));
    }

    #[test]
    fn only_clinicians_may_break_the_glass() {
        for role in Role::ALL {
            let allowed = authorize(&principal(&[role], true), BreakGlass) == Decision::Allow;
            assert_eq!(allowed, role == Role::Clinician, "{role}");
        }
    }

    /// Every role × permission cell, with and without MFA.
    #[test]
    fn full_matrix_with_and_without_mfa() {
        use Decision::Allow;
        use DenyReason::{MissingPermission as No, StepUpRequired as StepUp};
        for role in Role::ALL {
            for p in Permission::ALL {
                let granted = permissions_of(role).contains(&p);
                let mfa_needed = p.is_admin_operation() || (p.is_phi() && role == Role::Admin);
                let with_mfa = authorize(&principal(&[role], true), p);
                let without = authorize(&principal(&[role], false), p);
                match (granted, mfa_needed) {
                    (false, _) => {
                        assert_eq!(with_mfa, Decision::Deny(No(p)), "{role} {p}");
                        assert_eq!(without, Decision::Deny(No(p)), "{role} {p}");
                    }
                    (true, true) => {
                        assert_eq!(with_mfa, Allow, "{role} {p}");
                        assert_eq!(without, Decision::Deny(StepUp(p)), "{role} {p}");
                    }
                    (true, false) => {
                        assert_eq!(with_mfa, Allow, "{role} {p}");
                        assert_eq!(without, Allow, "{role} {p}");
                    }
                }
            }
        }
    }

    #[test]
    fn key_cells_of_the_matrix() {
        let allowed =
            |roles: &[Role], mfa, p| authorize(&principal(roles, mfa), p) == Decision::Allow;
        assert!(allowed(&[Role::Clinician], false, PatientWrite));
        assert!(!allowed(&[Role::Clinician], true, PatientDelete));
        assert!(allowed(&[Role::Viewer], false, PatientRead));
        assert!(!allowed(&[Role::Viewer], true, PatientWrite));
        assert!(!allowed(&[Role::Staff], true, PatientWrite));
        assert!(
            allowed(&[Role::Patient], true, PatientRead),
            "own record: see authorize_patient"
        );
        assert!(!allowed(&[Role::Patient], true, PatientWrite));
        assert!(!allowed(&[Role::Compliance], true, PatientRead));
        assert!(allowed(&[Role::Compliance], false, AuditRead));
        assert!(!allowed(&[Role::Service], true, PatientRead));
        assert!(
            !allowed(&[Role::Admin], false, PatientRead),
            "admin PHI access needs MFA"
        );
        assert!(
            allowed(&[Role::Admin, Role::Clinician], false, PatientRead),
            "a clinician grant needs none"
        );
        assert!(
            !allowed(&[Role::Admin, Role::Clinician], false, UserAdmin),
            "admin operations always do"
        );
        assert!(!allowed(&[], true, PatientRead));
    }

    /// Principals × relations × scopes for one record.
    #[test]
    fn patient_relationships() {
        let none = PatientRelation::default();
        let team = PatientRelation {
            care_team: true,
            ..none
        };
        let glass = PatientRelation {
            break_glass: true,
            ..none
        };
        let own = PatientRelation {
            own_record: true,
            ..none
        };
        let care = ClinicianScope::CareTeam;
        let org = ClinicianScope::Organization;
        let ok = |roles: &[Role], p, rel, scope| {
            authorize_patient(&principal(roles, false), p, rel, scope) == Decision::Allow
        };
        let cases: &[(&[Role], Permission, PatientRelation, ClinicianScope, bool)] = &[
            (&[Role::Clinician], PatientRead, none, care, false),
            (&[Role::Clinician], PatientRead, team, care, true),
            (&[Role::Clinician], PatientWrite, team, care, true),
            (&[Role::Clinician], PatientRead, glass, care, true),
            (&[Role::Clinician], PatientRead, none, org, true),
            (&[Role::Clinician], PatientRead, own, care, false),
            (&[Role::Staff], PatientRead, none, care, true),
            (&[Role::Viewer], PatientRead, none, care, true),
            (&[Role::Patient], PatientRead, own, care, true),
            (&[Role::Patient], PatientRead, none, org, false),
            (&[Role::Patient], PatientRead, team, org, false),
            (&[Role::Patient], PatientWrite, own, care, false),
            (&[Role::Compliance], PatientRead, own, org, false),
        ];
        for (roles, p, rel, scope, expected) in cases {
            assert_eq!(
                ok(roles, *p, *rel, *scope),
                *expected,
                "{roles:?} {p} {rel:?} {scope:?}"
            );
        }
        let denied = authorize_patient(
            &principal(&[Role::Clinician], false),
            PatientRead,
            none,
            care,
        );
        assert_eq!(
            denied,
            Decision::Deny(DenyReason::NoRelationship(PatientRead))
        );
        let admin = authorize_patient(&principal(&[Role::Admin], false), PatientRead, none, care);
        assert_eq!(
            admin,
            Decision::Deny(DenyReason::StepUpRequired(PatientRead)),
            "MFA rules still apply"
        );
    }

    #[test]
    fn organizations_may_require_mfa_for_all_staff_phi_access() {
        let check = |roles: &[Role], mfa, setting| {
            require_phi_mfa(&principal(roles, mfa), setting) == Decision::Allow
        };
        assert!(check(&[Role::Clinician], false, PhiMfa::Admin));
        assert!(!check(&[Role::Clinician], false, PhiMfa::AllStaff));
        assert!(check(&[Role::Clinician], true, PhiMfa::AllStaff));
        assert!(!check(&[Role::Viewer], false, PhiMfa::AllStaff));
        assert!(
            check(&[Role::Patient], false, PhiMfa::AllStaff),
            "patients are never asked"
        );
        assert!(
            check(&[Role::Service], false, PhiMfa::AllStaff),
            "a bot's key cannot do MFA"
        );
        assert!(!check(
            &[Role::Service, Role::Viewer],
            false,
            PhiMfa::AllStaff
        ));
    }

    #[test]
    fn listing_scopes() {
        let scope = |roles: &[Role], s| patient_list_scope(&principal(roles, true), s);
        assert_eq!(
            scope(&[Role::Viewer], ClinicianScope::CareTeam),
            PatientListScope::Organization
        );
        assert_eq!(
            scope(&[Role::Clinician], ClinicianScope::CareTeam),
            PatientListScope::CareTeam
        );
        assert_eq!(
            scope(&[Role::Clinician], ClinicianScope::Organization),
            PatientListScope::Organization
        );
        assert_eq!(
            scope(&[Role::Clinician, Role::Staff], ClinicianScope::CareTeam),
            PatientListScope::Organization
        );
        assert_eq!(
            scope(&[Role::Patient], ClinicianScope::Organization),
            PatientListScope::OwnRecord
        );
    }

    #[test]
    fn permission_names_are_unique() {
        let mut names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
    }

    #[test]
    fn access_logs_are_for_compliance_admins_and_the_patient_themself() {
        let own = PatientRelation {
            own_record: true,
            ..PatientRelation::default()
        };
        let treating = PatientRelation {
            care_team: true,
            ..PatientRelation::default()
        };
        let who = |roles: &[Role]| {
            Principal::new(
                SubjectId::parse("someone").unwrap_or_else(|e| panic!("{e}")),
                OrgId::generate(),
                RoleSet::of(roles),
            )
        };
        assert_eq!(
            authorize_access_log(&who(&[Role::Compliance]), PatientRelation::default()),
            Decision::Allow
        );
        assert_eq!(
            authorize_access_log(&who(&[Role::Admin]), PatientRelation::default()),
            Decision::Allow
        );
        assert_eq!(
            authorize_access_log(&who(&[Role::Patient]), own),
            Decision::Allow
        );
        assert!(matches!(
            authorize_access_log(&who(&[Role::Patient]), treating),
            Decision::Deny(_)
        ));
        assert!(matches!(
            authorize_access_log(&who(&[Role::Clinician]), treating),
            Decision::Deny(_)
        ));
        assert!(matches!(
            authorize_access_log(&who(&[Role::Viewer]), PatientRelation::default()),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn an_impersonated_session_changes_no_credentials() {
        let own = principal(&[Role::Clinician], true);
        assert!(may_change_own_credentials(&own));
        let admin = SubjectId::parse("admin-1").unwrap_or_else(|e| panic!("{e}"));
        assert!(!may_change_own_credentials(&own.with_actor(Some(admin))));
    }
}
