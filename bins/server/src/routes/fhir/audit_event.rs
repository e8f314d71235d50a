//! `AuditEvent`: read and search the organization's audit trail (compliance
//! and admins, `audit:read`), through the same query as
//! `/api/v1/audit-events`; every read is itself recorded (`audit.read`).

use actix_web::http::StatusCode;
use actix_web::web;
use carapace_audit::ActionKind;
use carapace_audit::Outcome;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::{
    PAGING, Params, Resource, Search, Searchset, bad, date_param, fhir_json, searchset_page,
};
use crate::fhir::audit_event::{ACTION_SYSTEM, to_fhir};
use crate::fhir::bundle::{Entry, Mode};
use crate::fhir::capability::AUDIT_EVENT_SEARCH;
use crate::http::auth::Authorized;
use crate::http::{ApiError, Reply};
use crate::routes::audit::{AuditParams, CURSOR_SCOPE, query};
use crate::state::State;

/// Registers the `AuditEvent` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/AuditEvent").route(web::get().to(search)))
        .service(web::resource("/AuditEvent/{id}").route(web::get().to(read)));
}

/// The read of the trail, recorded like the REST one.
fn read_event(auth: &Authorized, what: String) -> carapace_audit::AuditEvent {
    auth.access()
        .event("audit.read", "audit_log", None, Outcome::Allowed)
        .with_detail(format!("fhir: {what}"))
}

/// Reads one audit event.
#[utoipa::path(get, operation_id = "fhir_audit_event_read", path = "/fhir/R4/AuditEvent/{id}", tag = "fhir",
    params(("id" = String, Path, description = "event id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the AuditEvent")))]
pub async fn read(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = crate::fhir::path_id(&id).ok_or(ApiError::NotFound)?;
    let mut q = query(&state, &auth, AuditParams::default())?;
    q.id = Some(id);
    q.limit = 1;
    let page = state
        .audit
        .query(
            &auth.access(),
            &q,
            read_event(&auth, format!("AuditEvent/{id}")),
        )
        .await?;
    let event = page.items.first().ok_or(ApiError::NotFound)?;
    Ok(fhir_json(StatusCode::OK, &to_fhir(event)))
}

/// `date` as [from, to) bounds of the REST query (times in microseconds).
fn date_bound(value: &str, params: &mut AuditParams) -> Result<(), ApiError> {
    let (from, to) = date_param("date", value, Duration::microseconds(1))?;
    let text = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    if let Some(f) = from {
        if params.from.is_some() {
            return Err(bad("date", "one lower bound at most"));
        }
        params.from = Some(text(f));
    }
    if let Some(t) = to {
        if params.to.is_some() {
            return Err(bad("date", "one upper bound at most"));
        }
        params.to = Some(text(t));
    }
    Ok(())
}

/// Searches the audit trail: `patient`, `agent`, `date`, `action` (C, R,
/// U, D, E), `subtype` (the Carapace action), `outcome`, `_count`; a
/// `searchset` with `next`.
#[utoipa::path(get, operation_id = "fhir_audit_event_search", path = "/fhir/R4/AuditEvent", tag = "fhir",
    params(("patient" = Option<String>, Query, description = "Patient/<id>"),
           ("agent" = Option<String>, Query, description = "the actor's subject"),
           ("date" = Option<String>, Query, description = "eq, ge, gt, le or lt a date or instant"),
           ("action" = Option<String>, Query, description = "C, R, U, D or E: the kind of the Carapace action"),
           ("subtype" = Option<String>, Query, description = "urn:carapace:audit-action|<action>, e.g. patient.read"),
           ("outcome" = Option<String>, Query, description = "allowed, denied, not_found or error"),
           ("_count" = Option<String>, Query, description = "page size, 1-500"),
           ("_cursor" = Option<String>, Query, description = "from the next link")),
    responses(Searchset))]
pub async fn search(auth: Authorized, state: State, search: Search) -> Reply {
    let Search { params, base } = search;
    let given = Params::check(
        &params,
        "the AuditEvent search",
        &[AUDIT_EVENT_SEARCH, PAGING],
    )?;
    let owned = |name: &str| given.one(name).map(str::to_owned);
    let mut p = AuditParams {
        patient: given
            .one("patient")
            .map(|v| v.strip_prefix("Patient/").unwrap_or(v).to_owned()),
        actor: given.one("agent").map(|v| {
            v.split_once('|')
                .map_or(v, |(_, subject)| subject)
                .to_owned()
        }),
        action: given.one("subtype").map(|v| {
            v.strip_prefix(ACTION_SYSTEM)
                .and_then(|v| v.strip_prefix('|'))
                .unwrap_or(v)
                .to_owned()
        }),
        outcome: owned("outcome"),
        limit: owned("_count"),
        cursor: owned("_cursor"),
        ..AuditParams::default()
    };
    for value in given.all("date") {
        date_bound(value, &mut p)?;
    }
    let kind = given
        .one("action")
        .map(|v| {
            ActionKind::parse(v).ok_or_else(|| {
                bad(
                    "action",
                    "C, R, U, D or E (subtype names one Carapace action)",
                )
            })
        })
        .transpose()?;
    let described = format!("{params:?}");
    let mut q = query(&state, &auth, p)?;
    q.kind = kind;
    let page = state
        .audit
        .query(&auth.access(), &q, read_event(&auth, described))
        .await?;
    let entries = page
        .items
        .iter()
        .map(|e| Entry::new(&base, "AuditEvent", e.id, to_fhir(e), Mode::Match))
        .collect();
    let cursor = page.next_after.map(|id| {
        state
            .cursor_key
            .seal(auth.principal.org(), CURSOR_SCOPE, id.as_bytes())
    });
    Ok(searchset_page(
        &base,
        "AuditEvent",
        &params,
        entries,
        cursor.as_deref(),
    ))
}
