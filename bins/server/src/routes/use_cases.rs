//! The domain use cases as the routes call them: the caller of a request
//! and the adapters of [`AppState`] bundled as the ports each use case
//! takes. No decisions here.

use carapace_clinical::access::{Caller, PatientAccess};
use carapace_clinical::consultation::RecordSharing;
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
