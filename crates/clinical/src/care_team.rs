//! Care-team assignment: who may join a patient's care team (ADR 0006:
//! care-team membership is what relates a clinician to a patient).

use carapace_audit::{SecurityEventKind, SecurityEventSink};
use carapace_auth::AuthError;
use carapace_auth::local::{AccountStore, UserId};
use carapace_auth::policy::may_practise;
use carapace_tenancy::{StorageError, SubjectId};
use uuid::Uuid;

use crate::access::Caller;
use crate::patient::{CareRole, PatientId, PatientRepository};
use crate::{ClinicalError, FieldError};

/// The ports care-team assignment works over.
pub struct CareTeams<'a, P, A> {
    /// Patients and their care teams.
    pub patients: &'a P,
    /// Local accounts, when local sign-in is on (a local subject must be
    /// an active clinician); identity-provider subjects are the
    /// provider's to vouch for.
    pub accounts: Option<&'a A>,
    /// Security events (the admin action).
    pub events: &'a dyn SecurityEventSink,
}

/// An account lookup's failure as a clinical one.
fn account_error(e: AuthError) -> ClinicalError {
    match e {
        AuthError::Storage(s) => ClinicalError::Storage(s),
        other => ClinicalError::Storage(StorageError::Internal(Box::new(other))),
    }
}

impl<P: PatientRepository, A: AccountStore> CareTeams<'_, P, A> {
    /// Adds `who` to patient `id`'s care team as `role` (again: changes the
    /// role), recorded as an admin action by `caller`. A local account
    /// joins only if it is active and may practise (422 `subject`
    /// otherwise); no such patient is [`ClinicalError::NotFound`].
    pub async fn assign(
        &self,
        caller: &Caller<'_>,
        id: PatientId,
        who: &SubjectId,
        role: CareRole,
    ) -> Result<(), ClinicalError> {
        let ctx = caller.principal.tenant();
        if let (Some(accounts), Ok(user)) = (self.accounts, Uuid::try_parse(who.as_str())) {
            let account = accounts
                .find_by_id(&ctx, UserId::from_uuid(user))
                .await
                .map_err(account_error)?;
            if account.is_some_and(|a| !a.active || !may_practise(a.roles)) {
                return Err(ClinicalError::Invalid(vec![FieldError::new(
                    "subject",
                    "must be an active clinician",
                )]));
            }
        }
        if !self.patients.assign(&ctx, id, who, role).await? {
            return Err(ClinicalError::NotFound);
        }
        let event = caller
            .security_event(
                SecurityEventKind::AdminAction,
                format!("care_team.assign {who} as {}", role.as_str()),
            )
            .about(id.to_string());
        self.events.emit(event).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use carapace_auth::{Role, RoleSet};
    use carapace_tenancy::{OrgId, OrgSettings};

    use super::*;
    use crate::access::fakes::{
        FakeAccounts, FakeEvents, FakePatients, block_on, caller, lock, principal, subject,
    };

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
}
