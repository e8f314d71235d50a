//! A patient's medication statements and side-effect reports, the
//! correlation of symptoms with medication starts for one patient, and the
//! organization's aggregate with small cells withheld.

use actix_web::{HttpResponse, web};
use carapace_auth::policy::Permission;
use carapace_clinical::medication::{
    Correlation, Medication, MedicationInput, MedicationRepository as _, SideEffect,
    SideEffectInput, Timeline, Window, organization_correlations, patient_correlations,
};
use carapace_clinical::patient::PatientId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::patients::related;
use crate::routes::use_cases::{caller, medication_records};
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/patients/{id}/medications")
            .route(web::post().to(add_medication))
            .route(web::get().to(history)),
    )
    .service(
        crate::http::idempotency::resource("/patients/{id}/side-effects")
            .route(web::post().to(add_side_effect)),
    )
    .service(
        web::resource("/patients/{id}/side-effect-correlations").route(web::get().to(correlate)),
    )
    .service(
        web::resource("/analytics/side-effect-correlations")
            .route(web::get().to(correlate_organization)),
    );
}

/// A medication statement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MedicationBody {
    #[schema(example = "Lisinopril", max_length = 200)]
    drug_name: String,
    #[schema(example = "10 mg", max_length = 100)]
    dose: String,
    #[schema(example = "once daily", max_length = 200)]
    schedule: String,
    /// `YYYY-MM-DD`.
    #[schema(example = "2026-11-01", format = Date)]
    started_on: String,
    /// `YYYY-MM-DD`, not before `started_on`.
    #[schema(format = Date)]
    stopped_on: Option<String>,
}

/// A side-effect report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SideEffectBody {
    #[schema(example = "Dry cough", max_length = 200)]
    symptom: String,
    /// `mild`, `moderate` or `severe`.
    #[schema(example = "mild")]
    severity: String,
    /// `YYYY-MM-DD`, not in the future.
    #[schema(example = "2026-11-05", format = Date)]
    onset_on: String,
}

/// A stored medication statement.
#[derive(Debug, Serialize, ToSchema)]
pub struct MedicationView {
    id: Uuid,
    drug_name: String,
    dose: String,
    schedule: String,
    started_on: String,
    stopped_on: Option<String>,
    created_at: String,
}

impl From<&Medication> for MedicationView {
    fn from(m: &Medication) -> Self {
        let d = &m.details;
        Self {
            id: m.id.as_uuid(),
            drug_name: d.drug_name.expose_phi().clone(),
            dose: d.dose.expose_phi().clone(),
            schedule: d.schedule.expose_phi().clone(),
            started_on: d.started_on.expose_phi().to_string(),
            stopped_on: d.stopped_on.as_ref().map(|s| s.expose_phi().to_string()),
            created_at: m.created_at.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

/// A stored side-effect report.
#[derive(Debug, Serialize, ToSchema)]
pub struct SideEffectView {
    id: Uuid,
    symptom: String,
    severity: String,
    onset_on: String,
    created_at: String,
}

impl From<&SideEffect> for SideEffectView {
    fn from(e: &SideEffect) -> Self {
        let d = &e.details;
        Self {
            id: e.id.as_uuid(),
            symptom: d.symptom.expose_phi().clone(),
            severity: d.severity.expose_phi().as_str().to_owned(),
            onset_on: d.onset_on.expose_phi().to_string(),
            created_at: e.created_at.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

/// A patient's medications and side effects, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    medications: Vec<MedicationView>,
    side_effects: Vec<SideEffectView>,
}

/// The wire shape of a patient's medications and side effects.
pub(crate) fn history_view(meds: &[Medication], effects: &[SideEffect]) -> History {
    History {
        medications: meds.iter().map(MedicationView::from).collect(),
        side_effects: effects.iter().map(SideEffectView::from).collect(),
    }
}

/// A drug-symptom pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct CorrelationView {
    drug: String,
    symptom: String,
    /// Reports (one patient) or patients (organization); `null` when
    /// withheld because fewer than 11.
    count: Option<u32>,
}

/// Correlations within a window.
#[derive(Debug, Serialize, ToSchema)]
pub struct Correlations {
    window_days: u16,
    items: Vec<CorrelationView>,
}

fn correlations(window: Window, items: Vec<Correlation>) -> Correlations {
    Correlations {
        window_days: window.days(),
        items: items
            .into_iter()
            .map(|c| CorrelationView {
                drug: c.drug,
                symptom: c.symptom,
                count: c.count,
            })
            .collect(),
    }
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// Records a medication statement.
#[utoipa::path(post, operation_id = "medications_add_medication", path = "/api/v1/patients/{id}/medications", tag = "medications", request_body = MedicationBody, params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 201, body = MedicationView),
    ))]
pub async fn add_medication(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: JsonBody<MedicationBody>,
) -> Reply {
    let b = body.0;
    let details = MedicationInput {
        drug_name: b.drug_name,
        dose: b.dose,
        schedule: b.schedule,
        started_on: b.started_on,
        stopped_on: b.stopped_on,
    }
    .parse(today())?;
    let made = medication_records(&state)
        .record(
            &caller(&auth),
            id.into_inner(),
            &details,
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Created().json(MedicationView::from(&made)))
}

/// Reports a side effect (patients for themselves, or their clinicians).
#[utoipa::path(post, operation_id = "medications_add_side_effect", path = "/api/v1/patients/{id}/side-effects", tag = "medications", request_body = SideEffectBody, params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 201, body = SideEffectView),
    ))]
pub async fn add_side_effect(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: JsonBody<SideEffectBody>,
) -> Reply {
    let b = body.0;
    let details = SideEffectInput {
        symptom: b.symptom,
        severity: b.severity,
        onset_on: b.onset_on,
    }
    .parse(today())?;
    let made = medication_records(&state)
        .report(
            &caller(&auth),
            id.into_inner(),
            &details,
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Created().json(SideEffectView::from(&made)))
}

/// The patient's medications and side effects.
#[utoipa::path(get, operation_id = "medications_history", path = "/api/v1/patients/{id}/medications", tag = "medications", params(("id" = Uuid, Path, description = "patient id")),
    responses((status = 200, body = History)))]
pub async fn history(auth: Authorized, state: State, id: web::Path<PatientId>) -> Reply {
    let patient = id.into_inner();
    let (meds, effects) = crate::routes::use_cases::medication_records(&state)
        .history(
            &crate::routes::use_cases::caller(&auth),
            patient,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(history_view(&meds, &effects)))
}

/// The correlation window.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// Days after a medication start in which a symptom counts (1-365,
    /// default 14).
    window_days: Option<u32>,
}

/// Which symptoms began within the window after one of the patient's
/// medication starts, with report counts.
#[utoipa::path(get, operation_id = "medications_correlate", path = "/api/v1/patients/{id}/side-effect-correlations", tag = "medications", params(("id" = Uuid, Path, description = "patient id"), WindowParams),
    responses((status = 200, body = Correlations)))]
pub async fn correlate(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    params: web::Query<WindowParams>,
) -> Reply {
    let window = Window::parse(params.window_days)?;
    let patient = id.into_inner();
    let access = related(&state, &auth, patient, Permission::PatientRead).await?;
    let (meds, effects) = state
        .medications
        .history(&access, patient)
        .await?
        .ok_or(ApiError::NotFound)?;
    let items = patient_correlations(&Timeline::of(&meds, &effects), window);
    Ok(HttpResponse::Ok().json(correlations(window, items)))
}

/// Across the organization: for each drug-symptom pair, how many patients
/// had the symptom begin within the window after starting the drug; counts
/// under 11 are withheld (`null`). No per-patient rows.
#[utoipa::path(get, operation_id = "medications_correlate_organization", path = "/api/v1/analytics/side-effect-correlations", tag = "medications", params(WindowParams),
    responses((status = 200, body = Correlations)))]
pub async fn correlate_organization(
    auth: Authorized,
    state: State,
    params: web::Query<WindowParams>,
) -> Reply {
    let window = Window::parse(params.window_days)?;
    let timelines = state.medications.timelines(&auth.access()).await?;
    let items = organization_correlations(&timelines, window);
    Ok(HttpResponse::Ok().json(correlations(window, items)))
}
