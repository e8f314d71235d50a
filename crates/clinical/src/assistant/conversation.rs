//! The assistant's use cases: a message sent (gate, patient reach,
//! redaction, the disclosure recorded before anything leaves) and a
//! conversation read.

use carapace_audit::{Access, SecurityEventSink};
use carapace_auth::policy::Permission;
use carapace_phi_crypto::Phi;
use carapace_tenancy::StorageError;
use time::OffsetDateTime;

use super::{
    AiProvider, AssistantRepository, Availability, HISTORY_TURNS, Redactor, Speaker, ai_gate,
    disclosure, message, prompt,
};
use crate::ClinicalError;
use crate::access::{AuditTrail, Caller, PatientAccess};
use crate::patient::{PatientId, PatientRepository};

/// The ports the assistant works over.
pub struct Conversations<'a, P, T, R, I> {
    /// Patients (the one in context, and whether the caller reaches it).
    pub patients: &'a P,
    /// Single audit events (the disclosure to the provider).
    pub trail: &'a T,
    /// Security events (refusals).
    pub events: &'a dyn SecurityEventSink,
    /// The stored conversations.
    pub conversations: &'a R,
    /// The deployment's provider, if it has one.
    pub ai: Option<I>,
    /// Whether the deployment's operator declared a BAA with the provider.
    pub deployment_baa: bool,
}

impl<P, T, R, I> Conversations<'_, P, T, R, I>
where
    P: PatientRepository,
    T: AuditTrail,
    R: AssistantRepository,
    I: AiProvider,
{
    fn gate(&self, caller: &Caller<'_>) -> Result<(), ClinicalError> {
        ai_gate(Availability {
            deployment_enabled: self.ai.is_some(),
            deployment_baa: self.deployment_baa,
            org_baa: caller.settings.ai_baa,
        })
    }

    /// The access for the conversation about `patient` (the caller's own
    /// when about no patient).
    async fn access(
        &self,
        caller: &Caller<'_>,
        patient: Option<PatientId>,
        now: OffsetDateTime,
    ) -> Result<Access, ClinicalError> {
        match patient {
            None => Ok(caller.access.clone()),
            Some(id) => {
                let reach = PatientAccess {
                    patients: self.patients,
                    trail: self.trail,
                    events: self.events,
                };
                reach.reach(caller, id, Permission::PatientRead, now).await
            }
        }
    }

    /// Sends `raw` to the assistant in the caller's conversation about
    /// `patient` (or about no patient) and returns the answer. The
    /// patient's identifiers and every identifier found in the text leave
    /// only as placeholders; the disclosure is recorded on the patient
    /// before anything is sent (fail closed).
    pub async fn send(
        &self,
        caller: &Caller<'_>,
        patient: Option<PatientId>,
        raw: &str,
        now: OffsetDateTime,
    ) -> Result<String, ClinicalError> {
        self.gate(caller)?;
        let Some(ai) = &self.ai else {
            return Err(ClinicalError::Storage(StorageError::Internal(
                "gate passed without a provider".into(),
            )));
        };
        let text = message(raw)?;
        let access = self.access(caller, patient, now).await?;
        let mut redactor = match patient {
            None => Redactor::none(),
            Some(id) => {
                let found = self.patients.get(&access, id).await?;
                let found = found.ok_or(ClinicalError::NotFound)?;
                Redactor::for_patient(&found.demographics)
            }
        };
        let earlier = self
            .conversations
            .history(&access, patient, HISTORY_TURNS)
            .await?;
        let outgoing = prompt(&earlier, &text, &mut redactor);
        if let Some(id) = patient {
            self.trail
                .record(&disclosure(&access, id, &ai.name()))
                .await?;
        }
        let raw = ai
            .complete(&outgoing.system, &outgoing.turns)
            .await
            .map_err(|_| ClinicalError::Unavailable {
                code: "ai_unavailable",
                detail: "the AI provider did not answer; try again later",
            })?;
        let answer = redactor.restore(&raw);
        self.conversations
            .append(
                &access,
                patient,
                &[
                    (Speaker::User, text),
                    (Speaker::Assistant, Phi::new(answer.clone())),
                ],
            )
            .await?;
        Ok(answer)
    }

    /// The last turns of the caller's conversation about `patient` (or
    /// about no patient).
    pub async fn history(
        &self,
        caller: &Caller<'_>,
        patient: Option<PatientId>,
        now: OffsetDateTime,
    ) -> Result<Vec<(Speaker, Phi<String>)>, ClinicalError> {
        self.gate(caller)?;
        let access = self.access(caller, patient, now).await?;
        self.conversations
            .history(&access, patient, HISTORY_TURNS)
            .await
    }
}
