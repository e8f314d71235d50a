//! Reading the audit trail: `/api/v1/audit-events` (compliance, admin) and
//! `/api/v1/patients/{id}/access-log` (the accounting of disclosures, also
//! for the patient themself). Every read is itself recorded.

use actix_web::{HttpResponse, web};
use carapace_audit::{AuditEvent, Outcome};
use carapace_clinical::FieldError;
use carapace_clinical::patient::PatientId;
use carapace_infra::audit::AuditQuery;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::{ApiError, Reply};
use crate::routes::problems;
use crate::routes::use_cases::{caller, patient_access};
use crate::state::{AppState, State};

pub mod summary;

pub(crate) const CURSOR_SCOPE: &str = "audit-events";
const MAX_FILTER: usize = 256;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/audit-events").route(web::get().to(list)))
        .service(web::resource("/audit-events/daily").route(web::get().to(summary::daily)))
        .service(web::resource("/audit-chain").route(web::get().to(summary::chain)))
        .service(web::resource("/patients/{id}/access-log").route(web::get().to(access_log)));
}

/// Filters of the audit trail.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events of this actor (token subject).
    pub(crate) actor: Option<String>,
    /// Only events about this patient.
    pub(crate) patient: Option<String>,
    /// Only events about this resource type (`patient`, `security`, `audit_log`).
    pub(crate) resource_type: Option<String>,
    /// Only events about this resource id.
    pub(crate) resource_id: Option<String>,
    /// Only this action (`patient.read`, `security.cross_tenant_attempt`).
    pub(crate) action: Option<String>,
    /// Only this outcome: `allowed`, `denied`, `not_found`, `error`.
    pub(crate) outcome: Option<String>,
    /// From this time (RFC 3339, inclusive).
    pub(crate) from: Option<String>,
    /// Before this time (RFC 3339).
    pub(crate) to: Option<String>,
    /// Page size, 1-500 (default 100).
    pub(crate) limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub(crate) cursor: Option<String>,
}

/// Where a request came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct OriginView {
    /// Request id.
    request_id: Option<String>,
    /// Client address.
    client_ip: Option<String>,
    /// User agent.
    user_agent: Option<String>,
}

/// One audit event. It names resources and PHI fields, never PHI values.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Event id (time-ordered).
    id: Uuid,
    /// When (RFC 3339).
    at: String,
    /// Who (token subject).
    actor: String,
    /// `user`, `service` or `system`.
    actor_kind: String,
    /// The admin really acting, when impersonating.
    acting_for: Option<String>,
    /// What was done.
    action: String,
    /// The kind of resource.
    resource_type: String,
    /// Its id.
    resource_id: Option<String>,
    /// PHI fields read or written (names only).
    phi_fields: Vec<String>,
    /// `allowed`, `denied`, `not_found` or `error`.
    outcome: String,
    /// Where the request came from.
    origin: OriginView,
    /// Identifiers or a reason code.
    detail: Option<String>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.at.format(&Rfc3339).unwrap_or_default(),
            actor: e.actor.to_string(),
            actor_kind: serde_json::to_value(e.actor_kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            acting_for: e.acting_for.map(|a| a.to_string()),
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            phi_fields: e.phi_fields,
            outcome: e.outcome.as_str().to_owned(),
            origin: OriginView {
                request_id: e.origin.request_id,
                client_ip: e.origin.client_ip,
                user_agent: e.origin.user_agent,
            },
            detail: e.detail,
        }
    }
}

/// A page of audit events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventList {
    /// The events.
    items: Vec<AuditEventView>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

fn invalid(field: &'static str, message: &'static str) -> ApiError {
    ApiError::Invalid(vec![FieldError::new(field, message)])
}

fn text(field: &'static str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_FILTER => {
            Err(invalid(field, "must be 1-256 characters"))
        }
        other => Ok(other),
    }
}

fn time(field: &'static str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| invalid(field, "must be an RFC 3339 time"))
        })
        .transpose()
}

/// The query of `params`, checked.
pub(crate) fn query(
    state: &AppState,
    auth: &Authorized,
    p: AuditParams,
) -> Result<AuditQuery, ApiError> {
    let limit = match p.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=500).contains(l))
            .ok_or_else(|| invalid("limit", "must be 1-500"))?,
    };
    let after = crate::http::extract::open_cursor(
        &state.cursor_key,
        auth.principal.org(),
        CURSOR_SCOPE,
        p.cursor.as_deref(),
        |b| Uuid::from_slice(b).ok(),
    )?;
    let patient = p
        .patient
        .as_deref()
        .map(|id| Uuid::parse_str(id).map_err(|_| invalid("patient", "must be a patient id")))
        .transpose()?;
    if patient.is_some() && (p.resource_type.is_some() || p.resource_id.is_some()) {
        return Err(invalid(
            "patient",
            "give either patient or resource_type/resource_id",
        ));
    }
    Ok(AuditQuery {
        actor: text("actor", p.actor)?,
        resource_type: match patient {
            Some(_) => Some("patient".into()),
            None => text("resource_type", p.resource_type)?,
        },
        resource_id: match patient {
            Some(id) => Some(id.to_string()),
            None => text("resource_id", p.resource_id)?,
        },
        action: text("action", p.action)?,
        kind: None,
        outcome: p
            .outcome
            .as_deref()
            .map(|o| {
                Outcome::parse(o).ok_or_else(|| {
                    invalid("outcome", "must be allowed, denied, not_found or error")
                })
            })
            .transpose()?,
        from: time("from", p.from.as_deref())?,
        to: time("to", p.to.as_deref())?,
        after,
        limit,
        id: None,
    })
}

async fn page(state: &AppState, auth: &Authorized, query: &AuditQuery, read: AuditEvent) -> Reply {
    let page = state.audit.query(&auth.access(), query, read).await?;
    let next_cursor = page.next_after.map(|id| {
        state
            .cursor_key
            .seal(auth.principal.org(), CURSOR_SCOPE, id.as_bytes())
    });
    Ok(HttpResponse::Ok().json(AuditEventList {
        items: page.items.into_iter().map(AuditEventView::from).collect(),
        next_cursor,
    }))
}

/// The organization's audit trail, filtered, a page at a time. The read is
/// recorded (`audit.read`).
#[utoipa::path(get, operation_id = "audit_list", path = "/api/v1/audit-events", tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, body = AuditEventList),
        problems::BadCursor,
    ))]
pub async fn list(auth: Authorized, state: State, params: web::Query<AuditParams>) -> Reply {
    let query = query(&state, &auth, params.into_inner())?;
    let read = auth
        .access()
        .event("audit.read", "audit_log", None, Outcome::Allowed)
        .with_detail(format!(
            "filters: actor={:?} resource={:?}/{:?} action={:?} outcome={:?}",
            query.actor,
            query.resource_type,
            query.resource_id,
            query.action,
            query.outcome.map(Outcome::as_str)
        ));
    page(&state, &auth, &query, read).await
}

/// The patient's accounting of disclosures: who read or changed the record,
/// when, from where, and with what outcome. For compliance and admins, and
/// for the patient themself. The read is recorded.
#[utoipa::path(get, operation_id = "audit_access_log", path = "/api/v1/patients/{id}/access-log", tag = "audit",
    params(("id" = Uuid, Path, description = "patient id"), ("limit" = Option<String>, Query, description = "page size, 1-500"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses(
        (status = 200, body = AuditEventList),
    ))]
pub async fn access_log(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    params: web::Query<PageParams>,
) -> Reply {
    let id = id.into_inner();
    let access = patient_access(&state)
        .reach_access_log(&caller(&auth), id, OffsetDateTime::now_utc())
        .await?;
    let params = params.into_inner();
    let query = query(
        &state,
        &auth,
        AuditParams {
            patient: Some(id.as_uuid().to_string()),
            limit: params.limit,
            cursor: params.cursor,
            ..AuditParams::default()
        },
    )?;
    let read = access.event(
        "patient.access_log",
        "audit_log",
        Some(id.as_uuid().to_string()),
        Outcome::Allowed,
    );
    page(&state, &auth, &query, read).await
}

/// Paging of the access log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    limit: Option<String>,
    cursor: Option<String>,
}
