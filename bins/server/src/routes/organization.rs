//! `/api/v1/organization/settings`: the caller's organization's access
//! settings (admin with MFA).

use actix_web::{HttpResponse, web};
use carapace_audit::SecurityEventKind;
use carapace_tenancy::{
    CalendarDetail, ClinicianScope, OrgSettings, OrganizationRepository as _, PhiMfa,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::Authorized;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
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

/// Longest and shortest reason for relaxing MFA for PHI.
const REASON_CHARS: std::ops::RangeInclusive<usize> = 10..=500;

/// The reason a change of `phi_mfa` from `current` to `next` carries: a
/// relaxation (all staff → admin only) needs one; nothing else takes one.
fn relaxation_reason(
    current: PhiMfa,
    next: PhiMfa,
    reason: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let field = |msg: &str| {
        ApiError::Invalid(vec![carapace_clinical::FieldError::new(
            "phi_mfa_reason",
            msg,
        )])
    };
    let relaxing = current == PhiMfa::AllStaff && next == PhiMfa::Admin;
    match (relaxing, reason.map(str::trim)) {
        (true, Some(r))
            if REASON_CHARS.contains(&r.chars().count()) && !r.chars().any(char::is_control) =>
        {
            Ok(Some(r.to_owned()))
        }
        (true, _) => Err(field(
            "relaxing MFA for PHI to admin only needs a reason of 10-500 characters",
        )),
        (false, Some(_)) => Err(field("only a relaxation of phi_mfa takes a reason")),
        (false, None) => Ok(None),
    }
}

fn parse(body: &SettingsBody) -> Result<OrgSettings, ApiError> {
    let mut errors = Vec::new();
    let clinician_scope = match body.clinician_scope.as_str() {
        "care_team" => Some(ClinicianScope::CareTeam),
        "organization" => Some(ClinicianScope::Organization),
        _ => None,
    };
    if clinician_scope.is_none() {
        errors.push(carapace_clinical::FieldError::new(
            "clinician_scope",
            "must be care_team or organization",
        ));
    }
    let phi_mfa = match body.phi_mfa.as_str() {
        "admin" => Some(PhiMfa::Admin),
        "all_staff" => Some(PhiMfa::AllStaff),
        _ => None,
    };
    if phi_mfa.is_none() {
        errors.push(carapace_clinical::FieldError::new(
            "phi_mfa",
            "must be admin or all_staff",
        ));
    }
    let calendar_detail = match body.calendar_detail.as_str() {
        "minimal" => Some(CalendarDetail::Minimal),
        "initials" => Some(CalendarDetail::Initials),
        _ => None,
    };
    if calendar_detail.is_none() {
        errors.push(carapace_clinical::FieldError::new(
            "calendar_detail",
            "must be minimal or initials",
        ));
    }
    match (clinician_scope, phi_mfa, calendar_detail) {
        (Some(clinician_scope), Some(phi_mfa), Some(calendar_detail)) => Ok(OrgSettings {
            clinician_scope,
            phi_mfa,
            calendar_detail,
            external_referrals: body.external_referrals,
            ai_baa: body.ai_baa,
        }),
        _ => Err(ApiError::Invalid(errors)),
    }
}

/// Reads the settings.
#[utoipa::path(get, operation_id = "organization_settings_get", path = "/api/v1/organization/settings", tag = "organization",
    responses((status = 200, body = SettingsBody)))]
pub async fn get(auth: Authorized, state: State) -> Reply {
    let org = state
        .orgs
        .find_by_id(auth.principal.org())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(org.settings)))
}

/// Replaces the settings.
#[utoipa::path(put, operation_id = "organization_settings_put", path = "/api/v1/organization/settings", tag = "organization", request_body = SettingsBody,
    responses((status = 200, body = SettingsBody)))]
pub async fn put(auth: Authorized, state: State, body: JsonBody<SettingsBody>) -> Reply {
    let settings = parse(&body.0)?;
    let current = state
        .orgs
        .find_by_id(auth.principal.org())
        .await?
        .ok_or(ApiError::NotFound)?
        .settings;
    let reason = relaxation_reason(
        current.phi_mfa,
        settings.phi_mfa,
        body.0.phi_mfa_reason.as_deref(),
    )?;
    if let Some(reason) = &reason {
        // Recorded before the change takes effect: no relaxation unseen.
        crate::http::auth::record(
            &state,
            auth.security_event(
                SecurityEventKind::PhiMfaRelaxed,
                format!("phi_mfa all_staff -> admin: {reason}"),
            ),
        )
        .await?;
    }
    if !state
        .orgs
        .update_settings(auth.principal.org(), settings)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    crate::http::auth::record(
        &state,
        auth.security_event(
            SecurityEventKind::OrgSettingsChanged,
            format!(
                "clinician_scope={} phi_mfa={} calendar_detail={} external_referrals={} ai_baa={}",
                settings.clinician_scope.as_str(),
                settings.phi_mfa.as_str(),
                settings.calendar_detail.as_str(),
                settings.external_referrals,
                settings.ai_baa
            ),
        ),
    )
    .await?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(settings)))
}
