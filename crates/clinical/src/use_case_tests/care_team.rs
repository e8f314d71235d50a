//! Care-team assignment against in-memory ports.

use carapace_auth::{Role, RoleSet};
use carapace_tenancy::{OrgId, OrgSettings};

use carapace_audit::SecurityEventKind;
use carapace_tenancy::SubjectId;
use uuid::Uuid;

use super::fakes::{FakeEvents, FakePatients, block_on, caller, lock, principal, subject};
use super::stores::FakeAccounts;
use crate::ClinicalError;
use crate::care_team::CareTeams;
use crate::patient::CareRole;

struct World {
    patients: FakePatients,
    accounts: FakeAccounts,
    events: FakeEvents,
}

impl World {
    fn new() -> Self {
        Self {
            patients: FakePatients::default(),
            accounts: FakeAccounts::default(),
            events: FakeEvents::default(),
        }
    }

    fn teams(&self, local: bool) -> CareTeams<'_, FakePatients, FakeAccounts> {
        CareTeams {
            patients: &self.patients,
            accounts: local.then_some(&self.accounts),
            events: &self.events,
        }
    }

    fn account(&self, active: bool, roles: &[Role]) -> SubjectId {
        let id = Uuid::now_v7();
        lock(&self.accounts.accounts).insert(id, (active, RoleSet::of(roles)));
        subject(&id.to_string())
    }
}

fn invalid_subject(r: Result<(), ClinicalError>) -> bool {
    matches!(r, Err(ClinicalError::Invalid(e)) if e.len() == 1 && e[0].field == "subject")
}

#[test]
fn only_active_clinicians_join_a_care_team() {
    let w = World::new();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    let admin = principal("admin-ann", org, &[Role::Admin]);
    let c = caller(&admin, OrgSettings::default());
    let assign =
        |who: &SubjectId| block_on(w.teams(true).assign(&c, id, who, CareRole::Consulting));
    let staff = w.account(true, &[Role::Staff]);
    let gone = w.account(false, &[Role::Clinician]);
    let viewer_admin = w.account(true, &[Role::Admin, Role::Viewer]);
    assert!(invalid_subject(assign(&staff)), "no licence to practise");
    assert!(invalid_subject(assign(&gone)), "deactivated");
    assert!(invalid_subject(assign(&viewer_admin)));
    assert!(lock(&w.patients.teams).is_empty());
    assert!(lock(&w.events.events).is_empty());
    let ada = w.account(true, &[Role::Clinician]);
    assert!(assign(&ada).is_ok());
    assert_eq!(
        lock(&w.patients.teams).get(&(id, ada.clone())),
        Some(&CareRole::Consulting)
    );
    let events = lock(&w.events.events);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, SecurityEventKind::AdminAction);
    assert_eq!(
        events[0].detail,
        format!("care_team.assign {ada} as consulting")
    );
    assert_eq!(events[0].resource_id, Some(id.to_string()));
}

#[test]
fn identity_provider_subjects_and_unknown_accounts_are_the_providers_to_vouch_for() {
    let w = World::new();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    let admin = principal("admin-ann", org, &[Role::Admin]);
    let c = caller(&admin, OrgSettings::default());
    let oidc = subject("oidc:ada");
    assert!(block_on(w.teams(true).assign(&c, id, &oidc, CareRole::Primary)).is_ok());
    let staff = w.account(true, &[Role::Staff]);
    assert!(
        block_on(w.teams(false).assign(&c, id, &staff, CareRole::Primary)).is_ok(),
        "without local sign-in no account is looked up"
    );
}

#[test]
fn another_organizations_patient_is_not_found_and_nothing_is_recorded() {
    let w = World::new();
    let foreign = w.patients.add(OrgId::generate());
    let admin = principal("admin-mallory", OrgId::generate(), &[Role::Admin]);
    let c = caller(&admin, OrgSettings::default());
    let ada = w.account(true, &[Role::Clinician]);
    assert!(matches!(
        block_on(w.teams(true).assign(&c, foreign, &ada, CareRole::Primary)),
        Err(ClinicalError::NotFound)
    ));
    assert!(lock(&w.patients.teams).is_empty());
    assert!(lock(&w.events.events).is_empty());
}
