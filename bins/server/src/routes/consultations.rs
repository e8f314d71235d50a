//! Consents and referrals: a patient's consent to share sections of their
//! record with one clinician (recorded by the patient or their care team,
//! withdrawable), referrals under it, and the shared record as the
//! receiving clinician reads it: exactly the consented sections, while the
//! consent is in force, audited in both organizations.

use actix_web::{HttpResponse, web};
use carapace_clinical::consultation::{Consent, ConsentId, ConsentInput, Referral, ReferralId};
use carapace_clinical::patient::PatientId;
use carapace_tenancy::{OrgSlug, OrganizationRepository as _};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::appointments::AppointmentView;
use crate::routes::medications::{History, history_view};
use crate::routes::patients::PatientView;
use crate::routes::problems;
use crate::routes::use_cases::{caller, record_sharing};
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/patients/{id}/consents")
            .route(web::post().to(record_consent))
            .route(web::get().to(consents)),
    )
    .service(
        web::resource("/patients/{id}/consents/{consent}/revoke")
            .route(web::post().to(revoke_consent)),
    )
    .service(
        crate::http::idempotency::resource("/referrals")
            .route(web::post().to(refer))
            .route(web::get().to(referrals)),
    )
    .service(web::resource("/referrals/{id}/record").route(web::get().to(shared_record)));
}

/// A consent to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// The clinician it is for.
    #[schema(example = "clinician-bob", max_length = 255)]
    recipient: String,
    /// The clinician's organization (slug), when not the patient's.
    #[schema(max_length = 63)]
    recipient_org: Option<String>,
    /// Any of `demographics`, `appointments`, `medications`.
    #[schema(max_items = 3, example = json!(["medications"]))]
    sections: Vec<String>,
    /// RFC 3339, at most 366 days ahead.
    #[schema(format = DateTime, max_length = 64)]
    expires_at: String,
}

/// A recorded consent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    id: Uuid,
    patient_id: Uuid,
    recipient: String,
    recipient_org: Uuid,
    sections: Vec<String>,
    expires_at: String,
    revoked_at: Option<String>,
    recorded_by: String,
    /// In force now.
    active: bool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl From<&Consent> for ConsentView {
    fn from(c: &Consent) -> Self {
        Self {
            id: c.id.as_uuid(),
            patient_id: c.patient.as_uuid(),
            recipient: c.recipient.as_str().to_owned(),
            recipient_org: c.recipient_org.as_uuid(),
            sections: c.sections.iter().map(|s| s.as_str().to_owned()).collect(),
            expires_at: rfc3339(c.expires_at),
            revoked_at: c.revoked_at.map(rfc3339),
            recorded_by: c.recorded_by.as_str().to_owned(),
            active: c.active(OffsetDateTime::now_utc()),
        }
    }
}

/// Records the patient's consent to share sections of their record with
/// one clinician until a time.
#[utoipa::path(post, operation_id = "consultations_record_consent", path = "/api/v1/patients/{id}/consents", tag = "consultations", request_body = ConsentBody, params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 201, body = ConsentView),
        problems::NoSuchPatient,
    ))]
pub async fn record_consent(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: JsonBody<ConsentBody>,
) -> Reply {
    let b = body.0;
    let recipient_org = match b.recipient_org.as_deref() {
        None => auth.principal.org(),
        Some(slug) => {
            let unknown = || {
                ApiError::Invalid(vec![carapace_clinical::FieldError::new(
                    "recipient_org",
                    "must be the slug of an organization",
                )])
            };
            let slug = OrgSlug::parse(slug).map_err(|_| unknown())?;
            state
                .orgs
                .find_by_slug(&slug)
                .await?
                .ok_or_else(unknown)?
                .id
        }
    };
    let input = ConsentInput {
        recipient: b.recipient,
        sections: b.sections,
        expires_at: b.expires_at,
    };
    let made = record_sharing(&state)
        .record_consent(
            &caller(&auth),
            id.into_inner(),
            input,
            recipient_org,
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Created().json(ConsentView::from(&made)))
}

/// The patient's consents.
#[utoipa::path(get, operation_id = "consultations_consents", path = "/api/v1/patients/{id}/consents", tag = "consultations", params(("id" = Uuid, Path, description = "patient id")),
    responses((status = 200, body = [ConsentView])))]
pub async fn consents(auth: Authorized, state: State, id: web::Path<PatientId>) -> Reply {
    let all = record_sharing(&state)
        .consents(&caller(&auth), id.into_inner(), OffsetDateTime::now_utc())
        .await?;
    let views: Vec<ConsentView> = all.iter().map(ConsentView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Withdraws a consent: what it shared stops at once.
#[utoipa::path(post, operation_id = "consultations_revoke_consent", path = "/api/v1/patients/{id}/consents/{consent}/revoke", tag = "consultations",
    params(("id" = Uuid, Path, description = "patient id"), ("consent" = Uuid, Path, description = "consent id")),
    responses((status = 204, description = "withdrawn")))]
pub async fn revoke_consent(
    auth: Authorized,
    state: State,
    path: web::Path<(Uuid, Uuid)>,
) -> Reply {
    let (patient, consent) = path.into_inner();
    record_sharing(&state)
        .revoke_consent(
            &caller(&auth),
            PatientId::from_uuid(patient),
            ConsentId::from_uuid(consent),
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A referral to make: the recipient is the consent's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferBody {
    patient_id: Uuid,
    /// An active consent of the patient.
    consent_id: Uuid,
}

/// A referral.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferralView {
    id: Uuid,
    /// The patient's organization.
    org: Uuid,
    patient_id: Uuid,
    consent_id: Uuid,
    from: String,
    to_org: Uuid,
    to: String,
    created_at: String,
}

impl From<&Referral> for ReferralView {
    fn from(r: &Referral) -> Self {
        Self {
            id: r.id.as_uuid(),
            org: r.org.as_uuid(),
            patient_id: r.patient.as_uuid(),
            consent_id: r.consent.as_uuid(),
            from: r.from.as_str().to_owned(),
            to_org: r.to_org.as_uuid(),
            to: r.to.as_str().to_owned(),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Refers a patient of one's care team to the clinician named by an
/// active consent of the patient: in this organization, or another one
/// when both allow external referrals.
#[utoipa::path(post, operation_id = "consultations_refer", path = "/api/v1/referrals", tag = "consultations", request_body = ReferBody,
    responses(
        (status = 201, body = ReferralView),
        (status = 403, description = "external_referrals_off, or not in the care team", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "no active consent of this patient", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refer(auth: Authorized, state: State, body: JsonBody<ReferBody>) -> Reply {
    let patient = PatientId::from_uuid(body.0.patient_id);
    let referral = record_sharing(&state)
        .refer(
            &caller(&auth),
            patient,
            ConsentId::from_uuid(body.0.consent_id),
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Created().json(ReferralView::from(&referral)))
}

/// Which referrals.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Direction {
    /// `incoming` (default: to me) or `outgoing` (from me).
    direction: Option<String>,
}

/// Referrals to the caller, or from the caller.
#[utoipa::path(get, operation_id = "consultations_referrals", path = "/api/v1/referrals", tag = "consultations",
    params(Direction),
    responses((status = 200, body = [ReferralView])))]
pub async fn referrals(auth: Authorized, state: State, params: web::Query<Direction>) -> Reply {
    let incoming = match params.direction.as_deref() {
        None | Some("incoming") => true,
        Some("outgoing") => false,
        Some(_) => {
            return Err(ApiError::Invalid(vec![carapace_clinical::FieldError::new(
                "direction",
                "must be incoming or outgoing",
            )]));
        }
    };
    let found = record_sharing(&state)
        .referrals(&caller(&auth), incoming)
        .await?;
    let views: Vec<ReferralView> = found.iter().map(ReferralView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// What a referral shares right now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedRecord {
    referral_id: Uuid,
    patient_id: Uuid,
    /// The sections the consent lets you read now.
    sections: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    demographics: Option<PatientView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appointments: Option<Vec<AppointmentView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    medications: Option<History>,
}

/// The record a referral shares with the caller: exactly the consented
/// sections, while the consent is in force (403 `consent_inactive` once it
/// is withdrawn or expired). Every read is recorded in both organizations.
#[utoipa::path(get, operation_id = "consultations_shared_record", path = "/api/v1/referrals/{id}/record", tag = "consultations",
    params(("id" = Uuid, Path, description = "referral id")),
    responses(
        (status = 200, body = SharedRecord),
        (status = 403, description = "consent_inactive or external_referrals_off", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn shared_record(auth: Authorized, state: State, id: web::Path<Uuid>) -> Reply {
    let id = id.into_inner();
    let shared = record_sharing(&state)
        .read(
            &caller(&auth),
            ReferralId::from_uuid(id),
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(SharedRecord {
        referral_id: id,
        patient_id: shared.referral.patient.as_uuid(),
        sections: shared
            .sections
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        demographics: shared.demographics.as_ref().map(PatientView::from),
        appointments: shared
            .appointments
            .map(|items| items.iter().map(AppointmentView::from).collect()),
        medications: shared.medications.map(|(m, e)| history_view(&m, &e)),
    }))
}
