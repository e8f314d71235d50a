//! `/api/v1/organization/settings`: the caller's organization's access
//! settings (admin with MFA).

use actix_web::{HttpResponse, web};
use carapace_clinical::organization::SettingsInput;
use carapace_tenancy::{CalendarDetail, OrgSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::Reply;
use crate::http::auth::Authorized;
use crate::http::extract::JsonBody;
use crate::routes::use_cases::{administration, caller};
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/organization/settings")
            .route(web::get().to(get))
            .route(web::put().to(put)),
    );
}

/// An organization's access settings.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// `care_team` (default: clinicians reach their care team) or
    /// `organization` (every patient).
    #[schema(example = "care_team")]
    clinician_scope: String,
    /// `all_staff` (default: every non-patient session needs MFA for PHI)
    /// or `admin` (only PHI through the admin role needs MFA): a
    /// relaxation, which needs `phi_mfa_reason` and is recorded as its own
    /// security event.
    #[schema(example = "all_staff")]
    phi_mfa: String,
    /// Why MFA for PHI is relaxed to `admin` (10-500 characters); required
    /// when `phi_mfa` moves from `all_staff` to `admin`, refused otherwise.
    /// Never returned.
    #[serde(default, skip_serializing)]
    #[schema(max_length = 500, write_only)]
    phi_mfa_reason: Option<String>,
    /// What calendar feeds show: `minimal` (default: times and
    /// "Appointment") or `initials` (also the patient's initials).
    #[serde(default = "minimal")]
    #[schema(example = "minimal")]
    calendar_detail: String,
    /// Whether clinicians may refer patients to, and receive referrals
    /// from, other organizations that allow it too (default `false`).
    #[serde(default)]
    external_referrals: bool,
    /// Whether the organization declares a signed business associate
    /// agreement covering AI (default `false`: the assistant is off).
    #[serde(default)]
    ai_baa: bool,
}

fn minimal() -> String {
    CalendarDetail::Minimal.as_str().to_owned()
}

impl From<OrgSettings> for SettingsBody {
    fn from(s: OrgSettings) -> Self {
        Self {
            clinician_scope: s.clinician_scope.as_str().to_owned(),
            phi_mfa: s.phi_mfa.as_str().to_owned(),
            calendar_detail: s.calendar_detail.as_str().to_owned(),
            external_referrals: s.external_referrals,
            ai_baa: s.ai_baa,
            phi_mfa_reason: None,
        }
    }
}

/// Reads the settings.
#[utoipa::path(get, operation_id = "organization_settings_get", path = "/api/v1/organization/settings", tag = "organization",
    responses((status = 200, body = SettingsBody)))]
pub async fn get(auth: Authorized, state: State) -> Reply {
    let settings = administration(&state).settings(&caller(&auth)).await?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(settings)))
}

/// Replaces the settings.
#[utoipa::path(put, operation_id = "organization_settings_put", path = "/api/v1/organization/settings", tag = "organization", request_body = SettingsBody,
    responses((status = 200, body = SettingsBody)))]
pub async fn put(auth: Authorized, state: State, body: JsonBody<SettingsBody>) -> Reply {
    let body = body.0;
    let wanted = SettingsInput {
        clinician_scope: body.clinician_scope,
        phi_mfa: body.phi_mfa,
        phi_mfa_reason: body.phi_mfa_reason,
        calendar_detail: body.calendar_detail,
        external_referrals: body.external_referrals,
        ai_baa: body.ai_baa,
    };
    let settings = administration(&state)
        .change_settings(&caller(&auth), &wanted)
        .await?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(settings)))
}
