//! `GET /metrics`: Prometheus text exposition, for the holder of the
//! metrics token only.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::Digest as _;

use crate::http::{ApiError, Reply};
use crate::state::State;

/// Registers `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// Prometheus metrics (`Authorization: Bearer <CARAPACE_METRICS_TOKEN>`;
/// 404 when no token is configured).
#[utoipa::path(get, operation_id = "metrics_get", path = "/metrics", tag = "health",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "missing or wrong metrics token"),
        (status = 404, description = "metrics are not enabled"),
    ))]
pub async fn metrics(req: HttpRequest, state: State) -> Reply {
    let Some(expected) = state.metrics_token else {
        return Err(ApiError::NotFound);
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Digests of equal length compared: the comparison's timing says
    // nothing about the token.
    let given: [u8; 32] = sha2::Sha256::digest(given.as_bytes()).into();
    if given != expected {
        return Err(ApiError::Unauthenticated(
            carapace_auth::AuthError::InvalidCredentials,
        ));
    }
    let body = state
        .metrics
        .render(state.db.pool_stats(), state.kill_switch.engaged());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}
