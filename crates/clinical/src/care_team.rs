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
