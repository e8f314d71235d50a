//! `/health/live` (the process answers) and `/health/ready` (the database
//! answers and its migrations are current).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, Reply};
use crate::state::State;

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
    /// `database`, `migrations`, `key_provider`, `oidc`, `audit_witness`,
    /// `redis` or `traces`.
    pub name: &'static str,
    /// `ok`, or a short reason.
    pub status: String,
}

/// Liveness: the process is up.
#[utoipa::path(get, operation_id = "health_live", path = "/health/live", tag = "health", responses((status = 200, description = "alive")))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "live" }))
}

/// The audit witness: ok while no signed checkpoint has waited for it
/// longer than the bound (saying how many wait), failing beyond it (PHI
/// routes are closed then).
async fn witness_check(gate: &crate::http::witness::WitnessGate) -> Result<String, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, gate.refresh()).await {
        Ok(Ok(b)) => {
            let age = b.age(time::OffsetDateTime::now_utc()).as_secs();
            let bound = gate.bound().as_secs();
            match b.waiting {
                0 => Ok("ok".to_owned()),
                n if !gate.closed() => Ok(format!(
                    "ok ({n} checkpoints waiting for the witness, oldest {age} s, bound {bound} s)"
                )),
                n => Err(format!(
                    "{n} checkpoints waiting for the witness, oldest {age} s, over the bound of {bound} s: PHI routes answer 503"
                )),
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: audit witness backlog check failed");
            Err("backlog unknown".to_owned())
        }
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Readiness: 200 when every check passes, else 503 naming the failures.
#[utoipa::path(get, operation_id = "health_ready", path = "/health/ready", tag = "health", responses(
    (status = 200, body = Readiness),
    (status = 503, description = "a check failed", body = crate::http::error::Problem, content_type = "application/problem+json"),
))]
pub async fn ready(state: State) -> Reply {
    let mut results: Vec<(&'static str, Result<String, String>)> = Vec::new();
    let database = match tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => Ok("ok".to_owned()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            Err("unreachable".to_owned())
        }
        Err(_) => Err("timed out".to_owned()),
    };
    let migrations = if database.is_ok() {
        match tokio::time::timeout(CHECK_TIMEOUT, state.db.pending_migrations()).await {
            Ok(Ok(p)) if p.is_empty() => Ok("ok".to_owned()),
            Ok(Ok(p)) => Err(format!("{} pending", p.len())),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: migration check failed");
                Err("unknown".to_owned())
            }
            Err(_) => Err("timed out".to_owned()),
        }
    } else {
        Err("not checked".to_owned())
    };
    results.push(("database", database));
    results.push(("migrations", migrations));
    // The key-encryption key wraps every data key (PHI) and MFA seeds: a
    // real round trip through its provider (a KMS call when remote),
    // whatever signs users in.
    let sealer = &state.key_provider;
    let round_trip = tokio::time::timeout(CHECK_TIMEOUT, async {
        let sealed = sealer.seal(b"readiness", b"probe").await?;
        sealer.open(b"readiness", &sealed).await
    })
    .await;
    let check = match round_trip {
        Ok(Ok(v)) if v == b"probe" => Ok("ok".to_owned()),
        Ok(_) => Err("cannot seal and open".to_owned()),
        Err(_) => Err("timed out".to_owned()),
    };
    results.push(("key_provider", check));
    if let Some(oidc) = state.authenticator.oidc() {
        // Not ready for want of keys: try the issuer again (bounded by the
        // check's timeout and the cache's own rate limit).
        let _ = tokio::time::timeout(CHECK_TIMEOUT, oidc.recover()).await;
        let s = oidc.status();
        let check = match (s.usable, s.last_error.is_some()) {
            (true, false) => Ok("ok".to_owned()),
            // Cached keys still verify tokens; the outage is visible here.
            (true, true) => Ok("ok (issuer unreachable; serving cached keys)".to_owned()),
            (false, _) => Err("no usable signing keys (issuer unreachable)".to_owned()),
        };
        results.push(("oidc", check));
    }
    if let Some(traces) = crate::logging::trace_export_status() {
        // Optional, but never silently dropped.
        results.push(("traces", traces.map(|()| "ok".to_owned())));
    }
    if let Some(gate) = &state.witness {
        results.push(("audit_witness", witness_check(gate).await));
    }
    if let Some(redis) = state.limiter.redis_check().await {
        // Down: limits fall back to each instance's memory (logged); the
        // instance is reported not ready until Redis answers again.
        let check = redis
            .map(|()| "ok".to_owned())
            .map_err(|_| "unreachable (rate limits are per instance meanwhile)".to_owned());
        results.push(("redis", check));
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    if !failed.is_empty() {
        return Err(ApiError::NotReady(format!(
            "failed checks: {}",
            failed.join(", ")
        )));
    }
    let checks = results
        .into_iter()
        .map(|(name, r)| Check {
            name,
            status: r.unwrap_or_else(|e| e),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Readiness {
        status: "ready",
        checks,
    }))
}
