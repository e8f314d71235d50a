//! The kill switch at the edge: while it is on, every request but health,
//! metrics, JWKS and the switch itself gets 503 with `Retry-After`. Each instance
//! re-reads the switch from the database every [`POLL`], so all obey
//! within about a second of a change made anywhere.

use actix_web::Error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use super::ApiError;
use crate::state::State;
pub use crate::state::kill_switch::{KillSwitchWatch, POLL};

/// What still answers while the switch is on.
fn exempt(path: &str) -> bool {
    path.starts_with("/health/")
        || path == "/.well-known/jwks.json"
        || path == "/api/v1/admin/kill-switch"
        || path == "/metrics"
}

/// Middleware: 503 while the switch is on.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if let Some(state) = req.app_data::<State>()
        && state.kill_switch.engaged()
        && !exempt(req.path())
    {
        return Ok(req
            .error_response(ApiError::Suspended)
            .map_into_boxed_body());
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::exempt;

    #[test]
    fn only_health_jwks_and_the_switch_stay_open() {
        for open in [
            "/health/live",
            "/health/ready",
            "/.well-known/jwks.json",
            "/api/v1/admin/kill-switch",
            "/metrics",
        ] {
            assert!(exempt(open), "{open}");
        }
        for closed in [
            "/api/v1/patients",
            "/api/v1/auth/login",
            "/docs/",
            "/openapi.json",
            "/api/v1/admin/kill-switchX",
            "/healthz",
        ] {
            assert!(!exempt(closed), "{closed}");
        }
    }
}
