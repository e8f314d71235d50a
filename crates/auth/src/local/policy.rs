//! Pure lockout and session-lifetime policies.

use time::{Duration, OffsetDateTime};

/// Consecutive failures that lock an account.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT: Duration = Duration::minutes(15);

/// An account's login state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginState {
    /// Consecutive failures since the last success or lockout.
    pub failed: u32,
    /// Locked until this time.
    pub locked_until: Option<OffsetDateTime>,
}

impl LoginState {
    /// Whether logins are refused at `now`.
    pub fn is_locked(&self, now: OffsetDateTime) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// The state after a failed attempt at `now`, and whether this failure
    /// locked the account.
    pub fn after_failure(&self, now: OffsetDateTime) -> (Self, bool) {
        let failed = self.failed + 1;
        if failed >= MAX_FAILURES {
            (
                Self {
                    failed: 0,
                    locked_until: Some(now + LOCKOUT),
                },
                true,
            )
        } else {
            (
                Self {
                    failed,
                    locked_until: self.locked_until,
                },
                false,
            )
        }
    }

    /// The state after a successful login.
    pub fn after_success() -> Self {
        Self::default()
    }
}

/// Session lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// No session outlives this, however active.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::minutes(30),
            absolute: Duration::hours(12),
        }
    }
}

/// Whether a session created at `created` and last used at `last_used` may
/// still be refreshed at `now`.
pub fn session_alive(
    created: OffsetDateTime,
    last_used: OffsetDateTime,
    now: OffsetDateTime,
    limits: SessionLimits,
) -> bool {
    now < created + limits.absolute && now < last_used + limits.idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

    #[test]
    fn five_consecutive_failures_lock_for_fifteen_minutes() {
        let mut state = LoginState::default();
        for i in 1..MAX_FAILURES {
            let (next, locked) = state.after_failure(T0);
            assert!(!locked, "failure {i}");
            assert!(!next.is_locked(T0));
            state = next;
        }
        let (locked_state, locked) = state.after_failure(T0);
        assert!(locked);
        assert!(locked_state.is_locked(T0 + Duration::minutes(14)));
        assert!(!locked_state.is_locked(T0 + Duration::minutes(15)));
        assert_eq!(LoginState::after_success(), LoginState::default());
    }

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let limits = SessionLimits::default();
        assert!(session_alive(T0, T0, T0 + Duration::minutes(29), limits));
        assert!(!session_alive(T0, T0, T0 + Duration::minutes(30), limits));
        let active = T0 + Duration::hours(11) + Duration::minutes(50);
        assert!(session_alive(
            T0,
            active,
            T0 + Duration::hours(11) + Duration::minutes(59),
            limits
        ));
        assert!(!session_alive(T0, active, T0 + Duration::hours(12), limits));
    }
}
