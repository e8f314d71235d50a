//! Relationships to a patient: care-team membership and the patient's own
//! account (admin, with MFA), and break-glass emergency access (clinicians).

use actix_web::{HttpResponse, web};
use carapace_audit::SecurityEventKind;
use carapace_clinical::patient::{PatientId, PatientRepository as _, break_glass_reason};
use carapace_tenancy::SubjectId;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::ApiError;
use crate::http::auth::{Authorized, admin_action, record};
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::state::AppState;

/// How long a break-glass grant lasts.
pub const BREAK_GLASS_FOR: Duration = Duration::hours(1);

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/patients/{id}/break-glass").route(web::post().to(break_glass)))
        .service(web::resource("/patients/{id}/care-team").route(web::post().to(assign)))
        .service(web::resource("/patients/{id}/account").route(web::put().to(link_account)));
}

/// Why emergency access is needed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// 20-1000 characters.
    #[schema(min_length = 20, max_length = 1000)]
    reason: String,
}

/// A granted emergency access.
#[derive(Serialize, ToSchema)]
pub struct BreakGlassGrant {
    /// RFC 3339 end of the grant.
    expires_at: String,
}

/// A subject (user id, `oidc:<sub>` …) to relate to the patient.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRef {
    /// The subject; `null` (for the account link) removes it.
    #[schema(max_length = 255)]
    subject: Option<String>,
}

fn subject(raw: Option<String>) -> Result<Option<SubjectId>, ApiError> {
    raw.map(|s| {
        SubjectId::parse(&s).map_err(|_| {
            ApiError::Invalid(vec![carapace_clinical::FieldError::new(
                "subject",
                "must be 1-255 bytes",
            )])
        })
    })
    .transpose()
}

/// Declares emergency access to a patient outside one's care team: a
/// written reason, one hour, recorded and alerted.
#[utoipa::path(post, path = "/api/v1/patients/{id}/break-glass", tag = "patients", request_body = BreakGlassRequest,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 201, body = BreakGlassGrant),
        (status = 403, description = "only clinicians", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn break_glass(
    auth: Authorized,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: JsonBody<BreakGlassRequest>,
) -> Result<HttpResponse, ApiError> {
    let reason = break_glass_reason(&body.0.reason)?;
    let id = PatientId::from_uuid(id.into_inner());
    let until = OffsetDateTime::now_utc() + BREAK_GLASS_FOR;
    let ctx = auth.0.tenant();
    if !state
        .patients
        .break_glass(&auth.access(), id, auth.0.subject(), &reason, until)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    record(
        &state,
        auth.security_event(
            SecurityEventKind::BreakGlass,
            format!(
                "patient {id} until {}",
                until.format(&Rfc3339).unwrap_or_default()
            ),
        ),
    )
    .await?;
    // The alert (delivery arrives with the audit issue's alert outbox).
    tracing::error!(alert = "break_glass", org = %ctx.org(), subject = %auth.0.subject(), patient = %id, "ALERT: break-glass access");
    Ok(HttpResponse::Created().json(BreakGlassGrant {
        expires_at: until.format(&Rfc3339).unwrap_or_default(),
    }))
}

/// Adds a clinician to the patient's care team.
#[utoipa::path(post, path = "/api/v1/patients/{id}/care-team", tag = "patients", request_body = SubjectRef,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "patient id")),
    responses((status = 204, description = "assigned"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn assign(
    auth: Authorized,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: JsonBody<SubjectRef>,
) -> Result<HttpResponse, ApiError> {
    let who = subject(body.0.subject)?.ok_or_else(|| {
        ApiError::Invalid(vec![carapace_clinical::FieldError::new(
            "subject",
            "is required",
        )])
    })?;
    let id = PatientId::from_uuid(id.into_inner());
    if state.patients.assign(&auth.0.tenant(), id, &who).await? {
        admin_action(
            &state,
            &auth,
            &format!("care_team.assign {who}"),
            id.to_string(),
        )
        .await?;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

/// Links the record to the patient's own account (or unlinks it).
#[utoipa::path(put, path = "/api/v1/patients/{id}/account", tag = "patients", request_body = SubjectRef,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "patient id")),
    responses((status = 204, description = "linked"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn link_account(
    auth: Authorized,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: JsonBody<SubjectRef>,
) -> Result<HttpResponse, ApiError> {
    let who = subject(body.0.subject)?;
    let id = PatientId::from_uuid(id.into_inner());
    if state
        .patients
        .link_account(&auth.0.tenant(), id, who.as_ref())
        .await?
    {
        admin_action(&state, &auth, "patient.account_link", id.to_string()).await?;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}
