//! The kill switch as this instance last read it: re-read from the
//! database every [`POLL`], so every instance obeys within about a second
//! of a change made anywhere (the edge middleware is
//! `crate::http::kill_switch`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use carapace_infra::kill_switch::{KillSwitchChange, KillSwitchState, SeaKillSwitch};
use carapace_tenancy::StorageError;

/// How often each instance re-reads the switch.
pub const POLL: Duration = Duration::from_secs(1);

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
        super::reread(
            POLL,
            "reading the kill switch failed; keeping the last state",
            || self.refresh(),
        )
        .await;
    }
}
