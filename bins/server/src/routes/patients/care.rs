//! Relationships to a patient: care-team membership and the patient's own
//! account (admin, with MFA), and break-glass emergency access (clinicians).

use actix_web::{HttpResponse, web};
use carapace_audit::SecurityEventKind;
use carapace_clinical::patient::{CareRole, PatientId, PatientRepository as _, break_glass_reason};
use carapace_tenancy::SubjectId;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use crate::http::auth::{Authorized, admin_action, record};
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::use_cases::{caller, care_teams};
use crate::state::State;

/// How long a break-glass grant lasts.
pub const BREAK_GLASS_FOR: Duration = Duration::hours(1);

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/patients/{id}/break-glass")
            .route(web::post().to(break_glass)),
    )
    .service(
        crate::http::idempotency::resource("/patients/{id}/care-team")
            .route(web::post().to(assign))
            .route(web::get().to(care_team)),
    )
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

/// A practitioner to add to the care team (or whose role to change).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CareTeamMember {
    /// The practitioner's subject.
    #[schema(max_length = 255)]
    subject: String,
    /// `primary` (default) or `consulting`.
    #[schema(example = "consulting")]
    role: Option<String>,
}

/// A member of a care team.
#[derive(Serialize, ToSchema)]
pub struct CareTeamEntry {
    subject: String,
    /// `primary` or `consulting`.
    role: String,
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
#[utoipa::path(post, operation_id = "patients_break_glass", path = "/api/v1/patients/{id}/break-glass", tag = "patients", request_body = BreakGlassRequest, params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 201, body = BreakGlassGrant),
        (status = 403, description = "only clinicians", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn break_glass(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: JsonBody<BreakGlassRequest>,
) -> Reply {
    let reason = break_glass_reason(&body.0.reason)?;
    let id = id.into_inner();
    let until = OffsetDateTime::now_utc() + BREAK_GLASS_FOR;
    let ctx = auth.principal.tenant();
    if !state
        .patients
        .break_glass(&auth.access(), id, auth.principal.subject(), &reason, until)
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
    tracing::error!(alert = "break_glass", org = %ctx.org(), subject = %auth.principal.subject(), patient = %id, "ALERT: break-glass access");
    Ok(HttpResponse::Created().json(BreakGlassGrant {
        expires_at: until.format(&Rfc3339).unwrap_or_default(),
    }))
}

/// Adds a practitioner to the patient's care team as `primary` or
/// `consulting` (again: changes the role).
#[utoipa::path(post, operation_id = "patients_care_team_assign", path = "/api/v1/patients/{id}/care-team", tag = "patients", request_body = CareTeamMember, params(("id" = Uuid, Path, description = "patient id")),
    responses((status = 204, description = "assigned")))]
pub async fn assign(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: JsonBody<CareTeamMember>,
) -> Reply {
    let mut errors = Vec::new();
    let who = subject(Some(body.0.subject))
        .map_err(|_| {
            errors.push(carapace_clinical::FieldError::new(
                "subject",
                "must be 1-255 bytes",
            ))
        })
        .ok()
        .flatten();
    let role = match body.0.role.as_deref() {
        None => Some(CareRole::Primary),
        Some(r) => CareRole::parse(r).or_else(|| {
            errors.push(carapace_clinical::FieldError::new(
                "role",
                "must be primary or consulting",
            ));
            None
        }),
    };
    let (Some(who), Some(role)) = (who, role) else {
        return Err(ApiError::Invalid(errors));
    };
    let id = id.into_inner();
    care_teams(&state)
        .assign(&caller(&auth), id, &who, role)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The patient's care team, with each practitioner's role.
#[utoipa::path(get, operation_id = "patients_care_team_list", path = "/api/v1/patients/{id}/care-team", tag = "patients", params(("id" = Uuid, Path, description = "patient id")),
    responses((status = 200, body = [CareTeamEntry])))]
pub async fn care_team(auth: Authorized, state: State, id: web::Path<PatientId>) -> Reply {
    let id = id.into_inner();
    let team = crate::routes::use_cases::patient_access(&state)
        .care_team(
            &crate::routes::use_cases::caller(&auth),
            id,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    let entries: Vec<CareTeamEntry> = team
        .into_iter()
        .map(|(subject, role)| CareTeamEntry {
            subject: subject.as_str().to_owned(),
            role: role.as_str().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}

/// Links the record to the patient's own account (or unlinks it).
#[utoipa::path(put, operation_id = "patients_link_account", path = "/api/v1/patients/{id}/account", tag = "patients", request_body = SubjectRef, params(("id" = Uuid, Path, description = "patient id")),
    responses((status = 204, description = "linked")))]
pub async fn link_account(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: JsonBody<SubjectRef>,
) -> Reply {
    let who = subject(body.0.subject)?;
    let id = id.into_inner();
    if state
        .patients
        .link_account(&auth.principal.tenant(), id, who.as_ref())
        .await?
    {
        admin_action(&state, &auth, "patient.account_link", id.to_string()).await?;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}
