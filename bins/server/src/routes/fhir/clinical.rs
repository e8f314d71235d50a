//! `CareTeam`, `MedicationStatement` and `AdverseEvent`: a patient's care
//! team, medications and side effects, searched by patient through the
//! same use cases as `/api/v1/patients/{id}/care-team` and
//! `/api/v1/patients/{id}/medications` (`patient:read` and a relationship;
//! the same audit events).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use carapace_clinical::medication::{MedicationId, SideEffectId};
use carapace_clinical::patient::PatientId;
use time::OffsetDateTime;

use super::{Resource, Searchset, bad, created, fhir_json, named, patient_of, read_id, searchset};
use crate::fhir::capability::{
    ADVERSE_EVENT_SEARCH, CARE_TEAM_SEARCH, MEDICATION_STATEMENT_SEARCH,
};
use crate::fhir::clinical::{
    adverse_event, care_team, element_of, medication_from_fhir, medication_statement,
    medication_status, side_effect_from_fhir,
};
use crate::http::Reply;
use crate::http::auth::Authorized;
use crate::http::extract::FhirBody;
use crate::routes::use_cases::{caller, medication_records, patient_access};
use crate::state::State;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/CareTeam").route(web::get().to(care_teams)))
        .service(web::resource("/CareTeam/{id}").route(web::get().to(care_team_read)))
        .service(
            web::resource("/MedicationStatement")
                .route(web::get().to(medication_statements))
                .route(web::post().to(medication_statement_create)),
        )
        .service(
            web::resource("/MedicationStatement/{id}")
                .route(web::get().to(medication_statement_read)),
        )
        .service(
            web::resource("/AdverseEvent")
                .route(web::get().to(adverse_events))
                .route(web::post().to(adverse_event_create)),
        )
        .service(web::resource("/AdverseEvent/{id}").route(web::get().to(adverse_event_read)));
}

/// The patient's care team, by patient.
#[utoipa::path(get, operation_id = "fhir_care_team_search", path = "/fhir/R4/CareTeam", tag = "fhir",
    params(("patient" = String, Query, description = "Patient/<id>")),
    responses(Searchset))]
pub async fn care_teams(auth: Authorized, state: State, req: HttpRequest) -> Reply {
    let patient = patient_of(&req, "CareTeam", CARE_TEAM_SEARCH)?;
    let team = patient_access(&state)
        .care_team(&caller(&auth), patient, OffsetDateTime::now_utc())
        .await?;
    Ok(searchset(
        &req,
        &state,
        "CareTeam",
        vec![(patient.to_string(), care_team(patient, &team))],
    ))
}

/// A patient's care team (its id is the patient's).
#[utoipa::path(get, operation_id = "fhir_care_team_read", path = "/fhir/R4/CareTeam/{id}", tag = "fhir",
    params(("id" = String, Path, description = "the patient's id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the CareTeam")))]
pub async fn care_team_read(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let patient = read_id(&id, PatientId::from_uuid)?;
    let team = patient_access(&state)
        .care_team(&caller(&auth), patient, OffsetDateTime::now_utc())
        .await?;
    Ok(fhir_json(StatusCode::OK, &care_team(patient, &team)))
}

/// The patient's medications.
#[utoipa::path(get, operation_id = "fhir_medication_statement_search", path = "/fhir/R4/MedicationStatement", tag = "fhir",
    params(("patient" = String, Query, description = "Patient/<id> (or subject)")),
    responses(Searchset))]
pub async fn medication_statements(auth: Authorized, state: State, req: HttpRequest) -> Reply {
    let patient = patient_of(&req, "MedicationStatement", MEDICATION_STATEMENT_SEARCH)?;
    let now = OffsetDateTime::now_utc();
    let (meds, _) = medication_records(&state)
        .history(&caller(&auth), patient, now)
        .await?;
    let found = meds
        .iter()
        .map(|m| (m.id.to_string(), medication_statement(m, now.date())))
        .collect();
    Ok(searchset(&req, &state, "MedicationStatement", found))
}

/// The patient's side effects.
#[utoipa::path(get, operation_id = "fhir_adverse_event_search", path = "/fhir/R4/AdverseEvent", tag = "fhir",
    params(("subject" = String, Query, description = "Patient/<id> (or patient)")),
    responses(Searchset))]
pub async fn adverse_events(auth: Authorized, state: State, req: HttpRequest) -> Reply {
    let patient = patient_of(&req, "AdverseEvent", ADVERSE_EVENT_SEARCH)?;
    let (_, effects) = medication_records(&state)
        .history(&caller(&auth), patient, OffsetDateTime::now_utc())
        .await?;
    let found = effects
        .iter()
        .map(|s| (s.id.to_string(), adverse_event(s)))
        .collect();
    Ok(searchset(&req, &state, "AdverseEvent", found))
}

/// One medication statement (its patient's history is read, as a search
/// reads it: the same decision and audit event).
#[utoipa::path(get, operation_id = "fhir_medication_statement_read", path = "/fhir/R4/MedicationStatement/{id}", tag = "fhir",
    params(("id" = String, Path, description = "medication statement id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the MedicationStatement")))]
pub async fn medication_statement_read(
    auth: Authorized,
    state: State,
    id: web::Path<String>,
) -> Reply {
    let id = read_id(&id, MedicationId::from_uuid)?;
    let now = OffsetDateTime::now_utc();
    let found = medication_records(&state)
        .medication(&caller(&auth), id, now)
        .await?;
    Ok(fhir_json(
        StatusCode::OK,
        &medication_statement(&found, now.date()),
    ))
}

/// One side-effect report (read as [`medication_statement_read`] reads).
#[utoipa::path(get, operation_id = "fhir_adverse_event_read", path = "/fhir/R4/AdverseEvent/{id}", tag = "fhir",
    params(("id" = String, Path, description = "side-effect report id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the AdverseEvent")))]
pub async fn adverse_event_read(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, SideEffectId::from_uuid)?;
    let found = medication_records(&state)
        .side_effect(&caller(&auth), id, OffsetDateTime::now_utc())
        .await?;
    Ok(fhir_json(StatusCode::OK, &adverse_event(&found)))
}

/// Records a medication statement of a patient (the REST route's use case:
/// `patient:write` and a relationship, `medication.create`). Its `status`
/// must be the one its dates give (`completed` once the end has passed).
#[utoipa::path(post, operation_id = "fhir_medication_statement_create", path = "/fhir/R4/MedicationStatement", tag = "fhir",
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 201, body = Resource, content_type = "application/fhir+json", description = "recorded")))]
pub async fn medication_statement_create(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    body: FhirBody,
) -> Reply {
    let now = OffsetDateTime::now_utc();
    let (patient, input, status) = medication_from_fhir(&body.0)?;
    let details = input.parse(now.date()).map_err(|e| named(e, element_of))?;
    if medication_status(&details, now.date()) != status {
        return Err(bad(
            "MedicationStatement.status",
            "must be completed once effectivePeriod.end has passed, active before",
        ));
    }
    let made = medication_records(&state)
        .record(&caller(&auth), patient, &details, now)
        .await?;
    let id = made.id.to_string();
    Ok(created(
        &req,
        &state,
        "MedicationStatement",
        &id,
        &medication_statement(&made, now.date()),
    ))
}

/// Records a side-effect report of a patient (the REST route's use case:
/// `side_effect:report` and a relationship, `side_effect.create`).
#[utoipa::path(post, operation_id = "fhir_adverse_event_create", path = "/fhir/R4/AdverseEvent", tag = "fhir",
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 201, body = Resource, content_type = "application/fhir+json", description = "recorded")))]
pub async fn adverse_event_create(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    body: FhirBody,
) -> Reply {
    let now = OffsetDateTime::now_utc();
    let (patient, input) = side_effect_from_fhir(&body.0)?;
    let details = input.parse(now.date()).map_err(|e| named(e, element_of))?;
    let made = medication_records(&state)
        .report(&caller(&auth), patient, &details, now)
        .await?;
    let id = made.id.to_string();
    Ok(created(
        &req,
        &state,
        "AdverseEvent",
        &id,
        &adverse_event(&made),
    ))
}
