use super::*;
use crate::RoleSet;
use Permission::{BreakGlass, PatientDelete, PatientWrite, UserAdmin};
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
    let allowed = |roles: &[Role], mfa, p| authorize(&principal(roles, mfa), p) == Decision::Allow;
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

mod smart_scopes {
    use super::super::*;
    use crate::smart::Scopes;
    use carapace_tenancy::{OrgId, SubjectId};

    fn scoped(roles: &[Role], claim: &str) -> Principal {
        Principal::new(
            SubjectId::parse("oidc:u").unwrap_or_else(|e| panic!("{e:?}")),
            OrgId::from_uuid(uuid::Uuid::nil()),
            crate::RoleSet::of(roles),
        )
        .with_mfa(true)
        .with_scopes(Scopes::from_claim(claim).unwrap_or_else(|| panic!("claim")))
    }

    #[test]
    fn scopes_never_widen_the_roles() {
        let viewer = scoped(&[Role::Viewer], "system/*.cruds");
        assert_eq!(authorize(&viewer, PatientRead), Decision::Allow);
        assert_eq!(
            authorize(&viewer, Permission::PatientWrite),
            Decision::Deny(DenyReason::MissingPermission(Permission::PatientWrite))
        );
    }

    #[test]
    fn scopes_narrow_the_roles() {
        let admin = scoped(&[Role::Admin], "user/Patient.rs");
        assert_eq!(authorize(&admin, PatientRead), Decision::Allow);
        for p in [
            Permission::PatientWrite,
            Permission::PatientDelete,
            Permission::UserAdmin,
            AuditRead,
            AppointmentRead,
        ] {
            assert_eq!(
                authorize(&admin, p),
                Decision::Deny(DenyReason::OutOfScope(p)),
                "{p}"
            );
        }
        assert_eq!(
            authorize_interaction(
                &admin,
                PatientRead,
                ResourceType::Patient,
                Interaction::Read
            ),
            Decision::Allow
        );
        let read_only = scoped(&[Role::Admin], "user/Patient.r");
        assert_eq!(
            authorize_interaction(
                &read_only,
                PatientRead,
                ResourceType::Patient,
                Interaction::Search
            ),
            Decision::Deny(DenyReason::OutOfScope(PatientRead))
        );
    }

    #[test]
    fn patient_scopes_confine_to_the_own_record_whatever_the_role() {
        let clinician = scoped(&[Role::Clinician, Role::Staff], "patient/*.rs");
        let related = PatientRelation {
            care_team: true,
            break_glass: true,
            own_record: false,
        };
        assert_eq!(
            authorize_patient(
                &clinician,
                PatientRead,
                related,
                ClinicianScope::Organization
            ),
            Decision::Deny(DenyReason::OutOfScope(PatientRead))
        );
        let own = PatientRelation {
            own_record: true,
            ..PatientRelation::default()
        };
        assert_eq!(
            authorize_patient(&clinician, PatientRead, own, ClinicianScope::CareTeam),
            Decision::Allow
        );
        assert_eq!(
            patient_list_scope(&clinician, ClinicianScope::Organization),
            PatientListScope::OwnRecord
        );
        assert_eq!(schedule_scope(&clinician), None);
        let user_too = scoped(&[Role::Staff], "patient/*.rs user/Patient.rs");
        assert_eq!(
            patient_list_scope(&user_too, ClinicianScope::CareTeam),
            PatientListScope::Organization
        );
    }
}

#[test]
fn scopes_reach_a_permission_through_any_of_its_interactions() {
    use crate::smart::{Reach, Scopes};
    let s = Scopes::from_claim("openid user/Patient.rs").unwrap_or_default();
    assert_eq!(scope_reach(&s, Permission::PatientRead), Some(Reach::Roles));
    assert_eq!(scope_reach(&s, Permission::PatientWrite), None);
    assert_eq!(scope_reach(&s, Permission::UserAdmin), None);
    assert_eq!(
        scope_reach(&Scopes::unrestricted(), Permission::UserAdmin),
        Some(Reach::Roles)
    );
}
