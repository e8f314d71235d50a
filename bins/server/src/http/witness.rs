//! The PHI gate of the audit witness: while a signed checkpoint has waited
//! longer than `CARAPACE_AUDIT_WITNESS_MAX_BACKLOG_SECS` for the witness
//! outside the database, every route that may serve PHI answers 503
//! `audit_witness_backlog` (fail closed): events recorded meanwhile could
//! be cut unseen. Each instance re-reads the backlog from the database
//! every [`POLL`], so all close and reopen within about a second of each
//! other, whichever instance anchors.
//!
//! Deny by default: every matched route is gated except the few that
//! serve no PHI and that operators need during an incident (`open`).

use actix_web::Error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use super::ApiError;
use crate::state::State;
pub use crate::state::witness_gate::{POLL, WitnessGate};

/// Routes that stay open while the gate is closed: health, keys, docs,
/// sign-in, the kill switch, the audit trail itself, and the
/// administration of users, service keys and organization settings.
fn open(pattern: &str) -> bool {
    const PREFIXES: [&str; 7] = [
        "/health/",
        "/docs",
        "/api/v1/auth/",
        "/api/v1/users",
        "/api/v1/service-keys",
        "/api/v1/admin/kill-switch",
        "/api/v1/organization/settings",
    ];
    const EXACT: [&str; 4] = [
        "/metrics",
        "/openapi.json",
        "/.well-known/jwks.json",
        "/api/v1/audit-events",
    ];
    EXACT.contains(&pattern) || PREFIXES.iter().any(|p| pattern.starts_with(p))
}

/// Middleware: 503 on every gated route while the gate is closed.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if let Some(state) = req.app_data::<State>()
        && state.witness.as_ref().is_some_and(|g| g.closed())
        && req.match_pattern().is_some_and(|p| !open(&p))
    {
        return Ok(req
            .error_response(ApiError::WitnessBacklog)
            .map_into_boxed_body());
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::open;

    #[test]
    fn phi_routes_close_and_operations_stay_open() {
        for open_route in [
            "/health/ready",
            "/metrics",
            "/.well-known/jwks.json",
            "/api/v1/auth/login",
            "/api/v1/admin/kill-switch",
            "/api/v1/audit-events",
            "/api/v1/users/{id}/lock",
            "/api/v1/service-keys",
            "/api/v1/organization/settings",
        ] {
            assert!(open(open_route), "{open_route}");
        }
        for gated in [
            "/api/v1/patients",
            "/api/v1/patients/{id}",
            "/api/v1/patients/{id}/access-log",
            "/api/v1/patients/{id}/break-glass",
            "/api/v1/appointments",
            "/api/v1/calendar.ics",
            "/api/v1/assistant/messages",
            "/api/v1/referrals/{id}/record",
            "/api/v1/verification-tasks",
            "/api/v1/analytics/research",
            "/api/v1/audit-events-export",
        ] {
            assert!(!open(gated), "{gated}");
        }
    }
}
