//! A queued unit's ticket: whether it waits, runs, or was withdrawn by a
//! caller that ran out of wait budget.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A queued unit's state, shared by its caller and whoever runs it. The
/// caller waits for a connection only until `deadline` (its request's wait
/// budget): then, if no transaction has taken its unit yet, it withdraws
/// it and answers that the database is unavailable. Once taken (the unit
/// has a connection) it is no longer waiting, and the caller stays for the
/// outcome.
pub(super) struct Ticket {
    state: AtomicU8,
    queued: Instant,
    pub(super) deadline: Instant,
    /// Nanoseconds from `queued` to the first run.
    waited: AtomicU64,
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const WITHDRAWN: u8 = 2;

impl Ticket {
    /// A unit queued now, whose caller waits at most `budget`.
    pub(super) fn new(budget: Duration) -> Self {
        let queued = Instant::now();
        Self {
            state: AtomicU8::new(QUEUED),
            queued,
            deadline: queued + budget,
            waited: AtomicU64::new(0),
        }
    }

    /// Takes the unit to run now; false if its caller withdrew it.
    pub(super) fn claim(&self) -> bool {
        match self
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let waited = u64::try_from(self.queued.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.waited.store(waited, Ordering::Release);
                true
            }
            Err(now) => now == RUNNING,
        }
    }

    /// Withdraws the unit; false if it has already run or is running.
    pub(super) fn withdraw(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the caller withdrew the unit.
    pub(super) fn withdrawn(&self) -> bool {
        self.state.load(Ordering::Acquire) == WITHDRAWN
    }

    /// Whether the unit has been taken to run.
    pub(super) fn claimed(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// How long the unit waited to be taken (zero until it is).
    pub(super) fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_claimed_or_withdrawn_never_both() {
        let t = Ticket::new(Duration::from_secs(1));
        assert!(t.claim() && t.claimed());
        assert!(!t.withdraw(), "a running unit cannot be withdrawn");
        assert!(t.claim(), "it may run again (after a shared failure)");
        let t = Ticket::new(Duration::from_secs(1));
        assert!(t.withdraw() && t.withdrawn());
        assert!(!t.claim(), "a withdrawn unit never runs");
    }
}
