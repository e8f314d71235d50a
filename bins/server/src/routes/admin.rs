//! `/api/v1/admin/kill-switch`: the deployment's operators (administrators
//! of the configured operator organization, in an MFA session) read and
//! set the kill switch. Everyone else is refused (403, recorded).

use actix_web::{HttpResponse, web};
use carapace_auth::policy::{DenyReason, Permission};
use carapace_clinical::FieldError;
use carapace_infra::kill_switch::{KillSwitchChange, KillSwitchState, REASON_MAX};
use carapace_tenancy::OrganizationRepository as _;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::http::auth::{Authorized, denied};
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::problems;
use crate::state::{AppState, State};

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/kill-switch")
            .route(web::get().to(get))
            .route(web::put().to(put)),
    );
}

/// The kill switch.
#[derive(Serialize, ToSchema)]
pub struct KillSwitchView {
    /// On: every route but health, JWKS and this one answers 503.
    engaged: bool,
    /// Why it was last changed.
    reason: Option<String>,
    /// Who last changed it.
    changed_by: Option<String>,
    /// When (RFC 3339).
    changed_at: Option<String>,
}

impl From<KillSwitchState> for KillSwitchView {
    fn from(s: KillSwitchState) -> Self {
        Self {
            engaged: s.engaged,
            reason: s.reason,
            changed_by: s.changed_by,
            changed_at: s.changed_at.and_then(|t| t.format(&Rfc3339).ok()),
        }
    }
}

/// A change of the kill switch.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchChangeBody {
    /// On or off.
    engaged: bool,
    /// Why: required to turn it on, 1-500 characters.
    #[schema(max_length = 500, example = "suspected credential leak; investigating")]
    reason: Option<String>,
}

/// Only the operator organization's administrators may touch the switch.
async fn operator(auth: &Authorized, state: &AppState) -> Result<(), ApiError> {
    let operator = match &state.operator_org {
        Some(slug) => state.orgs.find_by_slug(slug).await?.map(|o| o.id),
        None => None,
    };
    if operator == Some(auth.principal.org()) {
        return Ok(());
    }
    Err(denied(
        state,
        &auth.principal,
        &auth.origin,
        "kill switch (not the operator organization)".to_owned(),
        DenyReason::MissingPermission(Permission::KillSwitchWrite),
    )
    .await)
}

/// Reads the kill switch.
#[utoipa::path(get, operation_id = "kill_switch_get", path = "/api/v1/admin/kill-switch", tag = "operations",
    responses(
        (status = 200, body = KillSwitchView),
        problems::NotOperatorAdmin,
    ))]
pub async fn get(auth: Authorized, state: State) -> Reply {
    operator(&auth, &state).await?;
    let current = state.kill_switch.refresh().await?;
    Ok(HttpResponse::Ok().json(KillSwitchView::from(current)))
}

/// Turns the kill switch on or off; recorded in every organization's
/// audit trail.
#[utoipa::path(put, operation_id = "kill_switch_put", path = "/api/v1/admin/kill-switch", tag = "operations",
    request_body = KillSwitchChangeBody,
    responses(
        (status = 200, body = KillSwitchView),
        problems::NotOperatorAdmin,
        (status = 422, description = "reason missing (to engage) or too long", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(auth: Authorized, state: State, body: JsonBody<KillSwitchChangeBody>) -> Reply {
    operator(&auth, &state).await?;
    let KillSwitchChangeBody { engaged, reason } = body.0;
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    let problem = match &reason {
        None if engaged => Some("required to turn the kill switch on"),
        Some(r) if r.chars().count() > REASON_MAX => Some("at most 500 characters"),
        _ => None,
    };
    if let Some(message) = problem {
        return Err(ApiError::Invalid(vec![FieldError::new("reason", message)]));
    }
    let state_now = state
        .kill_switch
        .set(&KillSwitchChange {
            engaged,
            reason,
            by: auth.principal.subject().clone(),
            origin: auth.origin.clone(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(KillSwitchView::from(state_now)))
}
