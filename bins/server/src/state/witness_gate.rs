//! The audit witness's backlog as this instance last read it, against
//! its bound (`CARAPACE_AUDIT_WITNESS_MAX_BACKLOG_SECS`): re-read from the
//! database every [`POLL`]. The edge middleware that closes PHI routes
//! while it is over is `crate::http::witness`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use carapace_infra::Database;
use carapace_infra::witness::{Backlog, backlog};
use carapace_tenancy::StorageError;
use time::OffsetDateTime;

/// How often each instance re-reads the backlog.
pub const POLL: Duration = Duration::from_secs(1);

/// The backlog as this instance last read it, against its bound.
#[derive(Debug)]
pub struct WitnessGate {
    db: Database,
    bound: Duration,
    closed: AtomicBool,
}

impl WitnessGate {
    /// Reads the backlog once. If it cannot be read, the gate starts
    /// closed and opens once a later read finds the backlog within bound.
    pub async fn load(db: Database, bound: Duration) -> Self {
        let gate = Self {
            db,
            bound,
            closed: AtomicBool::new(true),
        };
        if let Err(e) = gate.refresh().await {
            tracing::warn!(error = %e, "cannot read the audit witness backlog; PHI routes are closed until it can be read");
        }
        gate
    }

    /// The bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Whether PHI routes are closed, as last read.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Re-reads the backlog and opens or closes the gate.
    pub async fn refresh(&self) -> Result<Backlog, StorageError> {
        let now = backlog(&self.db).await?;
        let over = now.age(OffsetDateTime::now_utc()) > self.bound;
        let was = self.closed.swap(over, Ordering::Relaxed);
        if was != over {
            if over {
                tracing::error!(
                    waiting = now.waiting,
                    bound_secs = self.bound.as_secs(),
                    "audit checkpoints have waited for the witness longer than the bound: PHI routes answer 503"
                );
            } else {
                tracing::warn!("audit witness backlog within bound: PHI routes open");
            }
        }
        Ok(now)
    }

    /// Re-reads every [`POLL`] until the task is aborted; a failed read
    /// keeps the last state (and is logged).
    pub async fn poll(self: std::sync::Arc<Self>) {
        super::reread(
            POLL,
            "reading the audit witness backlog failed; keeping the last state",
            || self.refresh(),
        )
        .await;
    }
}
