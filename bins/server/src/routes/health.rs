//! `/health/live` (the process answers) and `/health/ready` (the database
//! answers and its migrations are current).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::ApiError;
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The health routes.
pub fn scope() -> actix_web::Scope {
    web::scope("/health")
        .service(web::resource("/live").route(web::get().to(live)))
        .service(web::resource("/ready").route(web::get().to(ready)))
}

/// Result of the readiness checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Each check by name: `ok` or what failed.
    pub checks: Vec<Check>,
}

/// One readiness check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `database` or `migrations`.
    pub name: &'static str,
    /// `ok`, or a short reason.
    pub status: String,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "alive")))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "live" }))
}

/// Readiness: 200 when every check passes, else 503 naming the failures.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, body = Readiness),
    (status = 503, description = "a check failed", body = crate::http::error::Problem, content_type = "application/problem+json"),
))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database = match tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "unreachable".to_owned()
        }
        Err(_) => "timed out".to_owned(),
    };
    let migrations = if database == "ok" {
        match tokio::time::timeout(CHECK_TIMEOUT, state.db.pending_migrations()).await {
            Ok(Ok(p)) if p.is_empty() => "ok".to_owned(),
            Ok(Ok(p)) => format!("{} pending", p.len()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: migration check failed");
                "unknown".to_owned()
            }
            Err(_) => "timed out".to_owned(),
        }
    } else {
        "not checked".to_owned()
    };
    let checks = vec![
        Check {
            name: "database",
            status: database,
        },
        Check {
            name: "migrations",
            status: migrations,
        },
    ];
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.status != "ok")
        .map(|c| format!("{}: {}", c.name, c.status))
        .collect();
    if failed.is_empty() {
        Ok(HttpResponse::Ok().json(Readiness {
            status: "ready",
            checks,
        }))
    } else {
        Err(ApiError::NotReady(format!(
            "failed checks: {}",
            failed.join(", ")
        )))
    }
}
