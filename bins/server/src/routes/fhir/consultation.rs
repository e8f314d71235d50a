//! `Consent` and `ServiceRequest`: a patient's sharing consents, for
//! whoever may manage them (`consent:manage` and a relationship), and the
//! caller's referrals, made or received (`consultation`), through the same
//! use cases and audit events as `/api/v1/patients/{id}/consents` and
//! `/api/v1/referrals`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use carapace_clinical::consultation::{ConsentId, ReferralId};
use time::OffsetDateTime;

use super::{Resource, bad, fhir_json, patient_of, query_pairs, searchset};
use crate::fhir::appointment::SUBJECT_SYSTEM;
use crate::fhir::consultation::{consent, service_request};
use crate::fhir::path_id;
use crate::http::ApiError;
use crate::http::auth::Authorized;
use crate::routes::use_cases::{caller, record_sharing};
use crate::state::AppState;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/Consent").route(web::get().to(consents)))
        .service(web::resource("/Consent/{id}").route(web::get().to(consent_read)))
        .service(web::resource("/ServiceRequest").route(web::get().to(service_requests)))
        .service(web::resource("/ServiceRequest/{id}").route(web::get().to(service_request_read)));
}

/// A patient's consents.
#[utoipa::path(get, operation_id = "fhir_consent_search", path = "/fhir/R4/Consent", tag = "fhir",
    security(("bearer" = [])),
    params(("patient" = String, Query, description = "Patient/<id>")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "a searchset Bundle")))]
pub async fn consents(
    auth: Authorized,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let patient = patient_of(&req, false)?;
    let now = OffsetDateTime::now_utc();
    let all = record_sharing(&state)
        .consents(&caller(&auth), patient, now)
        .await?;
    let found = all
        .iter()
        .map(|c| (c.id.to_string(), consent(c, now)))
        .collect();
    Ok(searchset(&req, &state, "Consent", found))
}

/// One consent.
#[utoipa::path(get, operation_id = "fhir_consent_read", path = "/fhir/R4/Consent/{id}", tag = "fhir",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "consent id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Consent")))]
pub async fn consent_read(
    auth: Authorized,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id)
        .map(ConsentId::from_uuid)
        .ok_or(ApiError::NotFound)?;
    let now = OffsetDateTime::now_utc();
    let found = record_sharing(&state)
        .consent(&caller(&auth), id, now)
        .await?;
    Ok(fhir_json(StatusCode::OK, &consent(&found, now)))
}

/// Which of the caller's referrals a search asks for: (received, made).
/// `performer:identifier` and `requester:identifier` name a clinician
/// (`urn:carapace:subject|<subject>`): the caller's own narrows to the
/// referrals they received or made; anyone else's finds nothing, since the
/// caller sees no one else's referrals.
fn directions(req: &HttpRequest, me: &str) -> Result<(bool, bool), ApiError> {
    let mut wanted = (true, true);
    for (name, value) in query_pairs(req)? {
        let own = value
            .strip_prefix(SUBJECT_SYSTEM)
            .and_then(|v| v.strip_prefix('|'))
            .unwrap_or(&value)
            == me;
        match name.as_str() {
            "performer:identifier" => wanted = (wanted.0 && own, false),
            "requester:identifier" => wanted = (false, wanted.1 && own),
            other => {
                return Err(bad(
                    other,
                    "not a search parameter here: search by performer:identifier or requester:identifier",
                ));
            }
        }
    }
    Ok(wanted)
}

/// The referrals the caller made or received.
#[utoipa::path(get, operation_id = "fhir_service_request_search", path = "/fhir/R4/ServiceRequest", tag = "fhir",
    security(("bearer" = [])),
    params(
        ("performer:identifier" = Option<String>, Query, description = "urn:carapace:subject|<you>: the referrals you received"),
        ("requester:identifier" = Option<String>, Query, description = "urn:carapace:subject|<you>: the referrals you made"),
    ),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "a searchset Bundle")))]
pub async fn service_requests(
    auth: Authorized,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (received, made) = directions(&req, auth.principal.subject().as_str())?;
    let sharing = record_sharing(&state);
    let who = caller(&auth);
    let mut found = Vec::new();
    for (incoming, wanted) in [(true, received), (false, made)] {
        if wanted {
            found.extend(sharing.referrals(&who, incoming).await?);
        }
    }
    let here = auth.principal.org();
    let found = found
        .iter()
        .map(|r| (r.id.to_string(), service_request(r, here)))
        .collect();
    Ok(searchset(&req, &state, "ServiceRequest", found))
}

/// One referral the caller made or received.
#[utoipa::path(get, operation_id = "fhir_service_request_read", path = "/fhir/R4/ServiceRequest/{id}", tag = "fhir",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "referral id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the ServiceRequest")))]
pub async fn service_request_read(
    auth: Authorized,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id)
        .map(ReferralId::from_uuid)
        .ok_or(ApiError::NotFound)?;
    let found = record_sharing(&state).referral(&caller(&auth), id).await?;
    Ok(fhir_json(
        StatusCode::OK,
        &service_request(&found, auth.principal.org()),
    ))
}
