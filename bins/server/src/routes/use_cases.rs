//! The domain use cases as the routes call them: the caller of a request
//! and the adapters of [`AppState`] bundled as the ports each use case
//! takes. No decisions here.

use carapace_clinical::access::{Caller, PatientAccess};
use carapace_clinical::appointment::Scheduling;
use carapace_clinical::assistant::{AiError, AiProvider, Conversations, Speaker};
use carapace_clinical::care_team::CareTeams;
use carapace_clinical::consultation::RecordSharing;
use carapace_clinical::organization::OrgAdministration;
use carapace_infra::accounts::SeaAccounts;
use carapace_infra::assistant::{Ai, SeaAssistant};
use carapace_infra::audit::SeaAuditLog;
use carapace_infra::{
    SeaAppointments, SeaConsultations, SeaMedications, SeaOrganizations, SeaPatients,
};

use crate::http::auth::Authorized;
use crate::state::AppState;

/// The caller of an authorized request.
pub(crate) fn caller(auth: &Authorized) -> Caller<'_> {
    Caller {
        principal: &auth.principal,
        settings: auth.settings,
        origin: &auth.origin,
        access: auth.access(),
    }
}

/// The patient-access use cases over the server's adapters.
pub(crate) fn patient_access(state: &AppState) -> PatientAccess<'_, SeaPatients, SeaAuditLog> {
    PatientAccess {
        patients: &state.patients,
        trail: &state.audit,
        events: state.events.as_ref(),
    }
}

/// The record-sharing use cases over the server's adapters.
pub(crate) fn record_sharing(
    state: &AppState,
) -> RecordSharing<
    '_,
    SeaConsultations,
    SeaOrganizations,
    SeaAuditLog,
    SeaPatients,
    SeaAppointments,
    SeaMedications,
> {
    RecordSharing {
        consultations: &state.consultations,
        orgs: &state.orgs,
        trail: &state.audit,
        events: state.events.as_ref(),
        patients: &state.patients,
        appointments: &state.appointments,
        medications: &state.medications,
    }
}

/// The appointment use cases over the server's adapters.
pub(crate) fn scheduling(
    state: &AppState,
) -> Scheduling<'_, SeaPatients, SeaAuditLog, SeaAppointments> {
    Scheduling {
        patients: &state.patients,
        trail: &state.audit,
        events: state.events.as_ref(),
        appointments: &state.appointments,
    }
}

/// The medication use cases over the server's adapters.
pub(crate) fn medication_records(
    state: &AppState,
) -> carapace_clinical::medication::MedicationRecords<'_, SeaPatients, SeaAuditLog, SeaMedications>
{
    carapace_clinical::medication::MedicationRecords {
        patients: &state.patients,
        trail: &state.audit,
        events: state.events.as_ref(),
        medications: &state.medications,
    }
}

/// The organization's administration over the server's adapters.
pub(crate) fn administration(state: &AppState) -> OrgAdministration<'_, SeaOrganizations> {
    OrgAdministration {
        orgs: &state.orgs,
        events: state.events.as_ref(),
    }
}

/// The care-team use cases over the server's adapters.
pub(crate) fn care_teams(state: &AppState) -> CareTeams<'_, SeaPatients, SeaAccounts> {
    CareTeams {
        patients: &state.patients,
        accounts: state.local.as_ref().map(|l| &l.accounts),
        events: state.events.as_ref(),
    }
}

/// The deployment's AI provider, its failures logged (the answer names no
/// cause).
pub(crate) struct LoggedAi<'a>(&'a Ai);

impl AiProvider for LoggedAi<'_> {
    fn name(&self) -> String {
        self.0.name()
    }

    async fn complete(&self, system: &str, turns: &[(Speaker, String)]) -> Result<String, AiError> {
        self.0.complete(system, turns).await.inspect_err(|e| {
            tracing::warn!(error = %e, "AI provider failed");
        })
    }
}

/// The assistant use cases over the server's adapters.
pub(crate) fn assistant(
    state: &AppState,
) -> Conversations<'_, SeaPatients, SeaAuditLog, SeaAssistant, LoggedAi<'_>> {
    Conversations {
        patients: &state.patients,
        trail: &state.audit,
        events: state.events.as_ref(),
        conversations: &state.assistant,
        ai: state.ai.as_ref().map(LoggedAi),
        deployment_baa: state.ai_baa_signed,
    }
}
