//! The kill switch as this instance last read it: re-read from the
//! database every [`POLL`], so every instance obeys within about a second
//! of a change made anywhere (the edge middleware is
//! `crate::http::kill_switch`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use carapace_infra::kill_switch::{KillSwitchChange, KillSwitchState, SeaKillSwitch};
use carapace_tenancy::StorageError;

/// How often each instance re-reads the switch.
pub const POLL: Duration = Duration::from_secs(1);

/// The switch as this instance last read it.
#[derive(Debug)]
pub struct KillSwitchWatch {
    store: SeaKillSwitch,
    latest: Latest,
}

/// The switch's last known state, and how many changes this instance
/// made: a re-read that began before a change made here finished reads
/// what the change replaced, and must not undo it (an operator's "on"
/// would otherwise be lifted until the next re-read).
#[derive(Debug)]
struct Latest {
    engaged: AtomicBool,
    changes: Mutex<u64>,
}

impl Latest {
    fn new(engaged: bool) -> Self {
        Self {
            engaged: AtomicBool::new(engaged),
            changes: Mutex::new(0),
        }
    }

    fn engaged(&self) -> bool {
        self.engaged.load(Ordering::Relaxed)
    }

    /// Marks the start of a re-read.
    fn reading(&self) -> u64 {
        *self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A re-read begun at `began` found `engaged`: kept unless this
    /// instance changed the switch since. The previous state.
    fn read(&self, began: u64, engaged: bool) -> bool {
        let changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        if *changes == began {
            self.engaged.swap(engaged, Ordering::Relaxed)
        } else {
            self.engaged()
        }
    }

    /// This instance changed the switch to `engaged`.
    fn changed(&self, engaged: bool) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        *changes = changes.wrapping_add(1);
        self.engaged.store(engaged, Ordering::Relaxed);
    }
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
            latest: Latest::new(engaged),
        }
    }

    /// Whether the switch is on, as last read.
    pub fn engaged(&self) -> bool {
        self.latest.engaged()
    }

    /// Re-reads the switch.
    pub async fn refresh(&self) -> Result<KillSwitchState, StorageError> {
        let began = self.latest.reading();
        let state = self.store.status().await?;
        let was = self.latest.read(began, state.engaged);
        if was != state.engaged {
            tracing::warn!(engaged = state.engaged, "kill switch changed");
        }
        Ok(state)
    }

    /// Changes the switch (recorded in every organization's audit trail).
    pub async fn set(&self, change: &KillSwitchChange) -> Result<KillSwitchState, StorageError> {
        let state = self.store.set(change).await?;
        self.latest.changed(state.engaged);
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

#[cfg(test)]
mod tests {
    use super::Latest;

    #[test]
    fn a_re_read_begun_before_a_change_made_here_does_not_undo_it() {
        let latest = Latest::new(false);
        // The poll starts reading; meanwhile an operator turns the switch
        // on here; the poll's answer (off, from before) arrives last.
        let began = latest.reading();
        latest.changed(true);
        latest.read(began, false);
        assert!(latest.engaged(), "the stale read lifted the switch");
        // The next re-read sees the database as it is now.
        let began = latest.reading();
        assert!(latest.read(began, true));
        latest.read(latest.reading(), false);
        assert!(!latest.engaged(), "a change made elsewhere is obeyed");
    }
}
