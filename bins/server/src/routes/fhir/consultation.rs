//! `Consent` and `ServiceRequest`: a patient's sharing consents, for
//! whoever may manage them (`consent:manage` and a relationship), and the
//! caller's referrals, made or received (`consultation`), through the same
//! use cases and audit events as `/api/v1/patients/{id}/consents` and
//! `/api/v1/referrals`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use carapace_clinical::consultation::{Consent, ConsentId, ReferralId};
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    Params, Resource, Searchset, bad, created, fhir_json, named, patient_of, query_pairs, read_id,
    searchset,
};
use crate::fhir::appointment::SUBJECT_SYSTEM;
use crate::fhir::capability::{CONSENT_SEARCH, SERVICE_REQUEST_SEARCH};
use crate::fhir::consultation::{
    consent, consent_element, consent_from_fhir, referral_from_fhir, service_request, withdraws,
};
use crate::http::auth::Authorized;
use crate::http::extract::FhirBody;
use crate::http::{ApiError, Reply};
use crate::routes::use_cases::{caller, record_sharing};
use crate::state::State;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/Consent")
            .route(web::get().to(consents))
            .route(web::post().to(consent_create)),
    )
    .service(
        web::resource("/Consent/{id}")
            .route(web::get().to(consent_read))
            .route(web::put().to(consent_update)),
    )
    .service(
        web::resource("/ServiceRequest")
            .route(web::get().to(service_requests))
            .route(web::post().to(refer)),
    )
    .service(web::resource("/ServiceRequest/{id}").route(web::get().to(service_request_read)));
}

/// A patient's consents.
#[utoipa::path(get, operation_id = "fhir_consent_search", path = "/fhir/R4/Consent", tag = "fhir",
    params(("patient" = String, Query, description = "Patient/<id>")),
    responses(Searchset))]
pub async fn consents(auth: Authorized, state: State, req: HttpRequest) -> Reply {
    let patient = patient_of(&req, "Consent", CONSENT_SEARCH)?;
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
    params(("id" = String, Path, description = "consent id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Consent")))]
pub async fn consent_read(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, ConsentId::from_uuid)?;
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
    let params = query_pairs(req)?;
    let p = Params::check(
        &params,
        "the ServiceRequest search",
        &[SERVICE_REQUEST_SEARCH],
    )?;
    let mut wanted = (true, true);
    for (name, value) in p.pairs() {
        let own = value
            .strip_prefix(SUBJECT_SYSTEM)
            .and_then(|v| v.strip_prefix('|'))
            .unwrap_or(value)
            == me;
        wanted = if name == "performer:identifier" {
            (wanted.0 && own, false)
        } else {
            (false, wanted.1 && own)
        };
    }
    Ok(wanted)
}

/// The referrals the caller made or received.
#[utoipa::path(get, operation_id = "fhir_service_request_search", path = "/fhir/R4/ServiceRequest", tag = "fhir",
    params(
        ("performer:identifier" = Option<String>, Query, description = "urn:carapace:subject|<you>: the referrals you received"),
        ("requester:identifier" = Option<String>, Query, description = "urn:carapace:subject|<you>: the referrals you made"),
    ),
    responses(Searchset))]
pub async fn service_requests(auth: Authorized, state: State, req: HttpRequest) -> Reply {
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
    params(("id" = String, Path, description = "referral id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the ServiceRequest")))]
pub async fn service_request_read(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, ReferralId::from_uuid)?;
    let found = record_sharing(&state).referral(&caller(&auth), id).await?;
    Ok(fhir_json(
        StatusCode::OK,
        &service_request(&found, auth.principal.org()),
    ))
}

/// Records a patient's consent (the REST route's use case:
/// `consent:manage` and a relationship, `consent.create`); the recipient's
/// organization is the caller's unless the actor's identifier names
/// another by its assigner.
#[utoipa::path(post, operation_id = "fhir_consent_create", path = "/fhir/R4/Consent", tag = "fhir",
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 201, body = Resource, content_type = "application/fhir+json", description = "recorded")))]
pub async fn consent_create(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    body: FhirBody,
) -> Reply {
    let (patient, input, org) = consent_from_fhir(&body.0)?;
    let now = OffsetDateTime::now_utc();
    let made = record_sharing(&state)
        .record_consent(
            &caller(&auth),
            patient,
            input,
            org.unwrap_or(auth.principal.org()),
            now,
        )
        .await
        .map_err(|e| named(e, consent_element))?;
    let id = made.id.to_string();
    Ok(created(&req, &state, "Consent", &id, &consent(&made, now)))
}

/// Withdraws a consent: the consent as read with `status` `inactive`
/// (the REST revoke). Nothing else of a consent changes (422).
#[utoipa::path(put, operation_id = "fhir_consent_update", path = "/fhir/R4/Consent/{id}", tag = "fhir",
    params(("id" = String, Path, description = "consent id")),
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the consent as it now is")))]
pub async fn consent_update(
    auth: Authorized,
    state: State,
    id: web::Path<String>,
    body: FhirBody,
) -> Reply {
    let id = read_id(&id, ConsentId::from_uuid)?;
    // To the microsecond, as stored: the answer is what a read returns.
    let now = carapace_audit::event::now_micros();
    let sharing = record_sharing(&state);
    let who = caller(&auth);
    let current = sharing.consent(&who, id, now).await?;
    let without = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for volatile in ["status", "meta", "text", "id"] {
                o.remove(volatile);
            }
        }
        v
    };
    if body
        .0
        .get("id")
        .is_some_and(|v| v.as_str() != Some(&id.to_string()))
    {
        return Err(bad("Consent.id", "must be the id in the URL"));
    }
    if without(&body.0) != without(&consent(&current, now)) {
        return Err(bad(
            "Consent",
            "only its status changes (to inactive, to withdraw it): record a new consent instead",
        ));
    }
    let status = body.0.get("status").and_then(Value::as_str);
    let after = if withdraws(&current, status, now)? {
        sharing
            .revoke_consent(&who, current.patient, id, now)
            .await?;
        Consent {
            revoked_at: Some(now),
            ..current
        }
    } else {
        current
    };
    Ok(fhir_json(StatusCode::OK, &consent(&after, now)))
}

/// Refers a patient of one's care team under an active consent (the REST
/// route's use case: `referral.create` in both organizations); the
/// receiving clinician is the consent's.
#[utoipa::path(post, operation_id = "fhir_service_request_create", path = "/fhir/R4/ServiceRequest", tag = "fhir",
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 201, body = Resource, content_type = "application/fhir+json", description = "referred")))]
pub async fn refer(auth: Authorized, state: State, req: HttpRequest, body: FhirBody) -> Reply {
    let (patient, consent) = referral_from_fhir(&body.0)?;
    let made = record_sharing(&state)
        .refer(&caller(&auth), patient, consent, OffsetDateTime::now_utc())
        .await
        .map_err(|e| named(e, |_| "ServiceRequest.supportingInfo[0]".to_owned()))?;
    let id = made.id.to_string();
    let body = service_request(&made, auth.principal.org());
    Ok(created(&req, &state, "ServiceRequest", &id, &body))
}
