//! The patient-access use cases against in-memory ports, as an attacker
//! would probe them.

use carapace_audit::{Outcome, SecurityEventKind};
use carapace_auth::Role;
use carapace_auth::policy::{Decision, DenyReason, Permission, authorize_patient};
use carapace_tenancy::{ClinicianScope, OrgId, OrgSettings};

use super::fakes::{FakeEvents, FakePatients, FakeTrail, NOW, block_on, caller, lock, principal};
use crate::ClinicalError;
use crate::access::{PatientAccess, admission};
use crate::patient::PatientLinks;

struct World {
    patients: FakePatients,
    trail: FakeTrail,
    events: FakeEvents,
}

impl World {
    fn new() -> Self {
        Self {
            patients: FakePatients::default(),
            trail: FakeTrail::default(),
            events: FakeEvents::default(),
        }
    }

    fn access(&self) -> PatientAccess<'_, FakePatients, FakeTrail> {
        PatientAccess {
            patients: &self.patients,
            trail: &self.trail,
            events: &self.events,
        }
    }

    fn denials(&self) -> Vec<String> {
        lock(&self.events.events)
            .iter()
            .filter(|e| e.kind == SecurityEventKind::AuthorizationDenied)
            .map(|e| e.detail.clone())
            .collect()
    }
}

fn care_team_scope() -> OrgSettings {
    OrgSettings {
        clinician_scope: ClinicianScope::CareTeam,
        ..OrgSettings::default()
    }
}

#[test]
fn the_admission_is_the_policy_for_every_relationship() {
    let org = OrgId::generate();
    for roles in [
        &[Role::Clinician][..],
        &[Role::Patient],
        &[Role::Admin],
        &[Role::Staff],
        &[Role::Compliance],
        &[],
    ] {
        let p = principal("someone", org, roles);
        for scope in [ClinicianScope::CareTeam, ClinicianScope::Organization] {
            let settings = OrgSettings {
                clinician_scope: scope,
                ..OrgSettings::default()
            };
            for permission in Permission::ALL {
                let admission = admission(&caller(&p, settings), permission);
                for i in 0..8_u8 {
                    let links = PatientLinks {
                        care_team: i & 1 != 0,
                        break_glass: i & 2 != 0,
                        own_record: i & 4 != 0,
                    };
                    assert_eq!(
                        admission.decision(links),
                        authorize_patient(&p, permission, links.into(), scope),
                        "{roles:?} {permission} {links:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_care_team_reads_and_the_read_is_recorded_allowed() {
    let w = World::new();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    w.patients.join(id, "dr-ada");
    let ada = principal("dr-ada", org, &[Role::Clinician]);
    let read = block_on(w.access().read(&caller(&ada, care_team_scope()), id, NOW));
    assert_eq!(read.map(|p| p.id).ok(), Some(id));
    assert_eq!(*lock(&w.patients.reads), vec![Outcome::Allowed]);
    assert!(w.denials().is_empty());
}

#[test]
fn an_unrelated_clinician_is_refused_with_the_reason_and_a_security_event() {
    let w = World::new();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    let eve = principal("dr-eve", org, &[Role::Clinician]);
    let read = block_on(w.access().read(&caller(&eve, care_team_scope()), id, NOW));
    assert!(matches!(
        read,
        Err(ClinicalError::Denied(DenyReason::NoRelationship(
            Permission::PatientRead
        )))
    ));
    assert_eq!(*lock(&w.patients.reads), vec![Outcome::Denied]);
    assert_eq!(
        w.denials(),
        vec![format!(
            "{} on patient {id}: NoRelationship(PatientRead)",
            Permission::PatientRead
        )]
    );
    // The organization may widen its clinicians' reach.
    let wide = OrgSettings {
        clinician_scope: ClinicianScope::Organization,
        ..OrgSettings::default()
    };
    assert!(block_on(w.access().read(&caller(&eve, wide), id, NOW)).is_ok());
}

#[test]
fn another_organizations_patient_is_not_found_and_recorded_as_a_miss() {
    let w = World::new();
    let (home, foreign) = (OrgId::generate(), OrgId::generate());
    let id = w.patients.add(foreign);
    // Even an org-wide role, even named in the foreign care team.
    w.patients.join(id, "admin-mallory");
    let mallory = principal("admin-mallory", home, &[Role::Admin, Role::Clinician]);
    let c = caller(&mallory, OrgSettings::default());
    assert!(matches!(
        block_on(w.access().read(&c, id, NOW)),
        Err(ClinicalError::NotFound)
    ));
    assert!(matches!(
        block_on(w.access().reach(&c, id, Permission::PatientWrite, NOW)),
        Err(ClinicalError::NotFound)
    ));
    assert_eq!(
        *lock(&w.patients.misses),
        vec![(id, "patient.read".into()), (id, "patient.update".into())]
    );
    assert!(w.denials().is_empty(), "a miss is not a denial");
    assert!(lock(&w.trail.events).is_empty());
}

#[test]
fn a_refused_reach_is_recorded_in_the_trail_and_as_a_security_event() {
    let w = World::new();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    let eve = principal("dr-eve", org, &[Role::Clinician]);
    let reached = block_on(w.access().reach(
        &caller(&eve, care_team_scope()),
        id,
        Permission::ConsentManage,
        NOW,
    ));
    assert!(matches!(
        reached,
        Err(ClinicalError::Denied(DenyReason::NoRelationship(
            Permission::ConsentManage
        )))
    ));
    let trail = lock(&w.trail.events);
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].action, "consent.manage");
    assert_eq!(trail[0].outcome, Outcome::Denied);
    assert_eq!(trail[0].resource_id, Some(id.to_string()));
    assert_eq!(w.denials().len(), 1);
}

#[test]
fn break_glass_and_own_records_reach_exactly_what_they_grant() {
    let w = World::new();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    w.patients.break_glass_for(id, "dr-er");
    w.patients.link(id, "patient-jane");
    let er = principal("dr-er", org, &[Role::Clinician]);
    let jane = principal("patient-jane", org, &[Role::Patient]);
    let john = principal("patient-john", org, &[Role::Patient]);
    let reach = |p, permission| {
        block_on(
            w.access()
                .reach(&caller(p, care_team_scope()), id, permission, NOW),
        )
    };
    assert!(reach(&er, Permission::PatientWrite).is_ok());
    assert!(reach(&jane, Permission::PatientRead).is_ok());
    assert!(reach(&jane, Permission::SideEffectReport).is_ok());
    assert!(matches!(
        reach(&jane, Permission::PatientWrite),
        Err(ClinicalError::Denied(DenyReason::MissingPermission(_)))
    ));
    assert!(matches!(
        reach(&john, Permission::PatientRead),
        Err(ClinicalError::Denied(DenyReason::NoRelationship(_)))
    ));
}

#[test]
fn an_admin_without_mfa_must_step_up() {
    let w = World::new();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    let admin = carapace_auth::Principal::new(
        super::fakes::subject("admin-ann"),
        org,
        carapace_auth::RoleSet::of(&[Role::Admin]),
    );
    let read = block_on(w.access().read(&caller(&admin, care_team_scope()), id, NOW));
    assert!(matches!(
        read,
        Err(ClinicalError::Denied(DenyReason::StepUpRequired(_)))
    ));
    assert_eq!(read.err().map(|e| e.code()), Some("mfa_required"));
}

#[test]
fn a_refusal_that_cannot_be_recorded_fails_closed() {
    let w = World {
        events: FakeEvents {
            fail: true,
            ..FakeEvents::default()
        },
        ..World::new()
    };
    let org = OrgId::generate();
    let id = w.patients.add(org);
    let eve = principal("dr-eve", org, &[Role::Clinician]);
    let read = block_on(w.access().read(&caller(&eve, care_team_scope()), id, NOW));
    assert!(matches!(read, Err(ClinicalError::Audit(_))));
    assert_eq!(
        admission(&caller(&eve, care_team_scope()), Permission::PatientRead).decision(
            PatientLinks {
                care_team: true,
                ..PatientLinks::default()
            }
        ),
        Decision::Allow
    );
}
