//! The kill switch at the edge: while it is on, every request but health,
//! metrics, JWKS and the switch itself gets 503 with `Retry-After`. Each instance
//! re-reads the switch from the database every [`POLL`], so all obey
//! within about a second of a change made anywhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use carapace_infra::kill_switch::{KillSwitchChange, KillSwitchState, SeaKillSwitch};
use carapace_tenancy::StorageError;

use super::ApiError;
use crate::state::AppState;

/// How often each instance re-reads the switch.
pub const POLL: Duration = Duration::from_secs(1);

/// What still answers while the switch is on.
fn exempt(path: &str) -> bool {
    path.starts_with("/health/")
        || path == "/.well-known/jwks.json"
        || path == "/api/v1/admin/kill-switch"
        || path == "/metrics"
}

/// The switch as this instance last read it.
#[derive(Debug)]
pub struct KillSwitchWatch {
    store: SeaKillSwitch,
    engaged: AtomicBool,
}

impl KillSwitchWatch {
    /// Reads the switch once. If it cannot be read (a database still
    /// being migrated), the instance starts with the switch *on* (fail
    /// closed) and serves once a later read finds it off.
    pub async fn load(store: SeaKillSwitch) -> Self {
        let engaged = match store.status().await {
            Ok(state) => state.engaged,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kill switch; serving nothing until it can be read");
                true
            }
        };
        Self {
            store,
            engaged: AtomicBool::new(engaged),
        }
    }

    /// Whether the switch is on, as last read.
    pub fn engaged(&self) -> bool {
        self.engaged.load(Ordering::Relaxed)
    }

    /// Re-reads the switch.
    pub async fn refresh(&self) -> Result<KillSwitchState, StorageError> {
        let state = self.store.status().await?;
        let was = self.engaged.swap(state.engaged, Ordering::Relaxed);
        if was != state.engaged {
            tracing::warn!(engaged = state.engaged, "kill switch changed");
        }
        Ok(state)
    }

    /// Changes the switch (recorded in every organization's audit trail).
    pub async fn set(&self, change: &KillSwitchChange) -> Result<KillSwitchState, StorageError> {
        let state = self.store.set(change).await?;
        self.engaged.store(state.engaged, Ordering::Relaxed);
        Ok(state)
    }

    /// Re-reads every [`POLL`] until the task is aborted; a failed read
    /// keeps the last state (and is logged).
    pub async fn poll(self: std::sync::Arc<Self>) {
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "reading the kill switch failed; keeping the last state");
            }
        }
    }
}

/// Middleware: 503 while the switch is on.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>()
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
