//! Pure login-throttling, lock and session-lifetime policies.
//!
//! Failed passwords do not lock an account (anyone could lock anyone out
//! that way). They throttle it (NIST SP 800-63B §5.2.2): after
//! `FREE_FAILURES` consecutive failures each further attempt must wait a
//! rising delay, except from a situation where the account's owner signed
//! in before (a known client address), so a stranger's guessing does not
//! keep the owner out; after [`MAX_FAILURES`] consecutive failures only an
//! administrator reopens the account. An administrator's lock is a
//! separate state that only an administrator's unlock ends; a password
//! reset ends throttling, never that lock.

use time::{Duration, OffsetDateTime};

/// Consecutive failures allowed before attempts are delayed.
pub const FREE_FAILURES: u32 = 5;
/// Consecutive failures after which only an administrator reopens the
/// account (NIST SP 800-63B allows at most 100).
pub const MAX_FAILURES: u32 = 100;
/// The first delay; each further failure doubles it up to `MAX_DELAY`.
pub const FIRST_DELAY: Duration = Duration::minutes(1);
/// The longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::minutes(30);

/// The delay that `failures` consecutive failures impose on the next
/// attempt: none below `FREE_FAILURES`, then `FIRST_DELAY` doubling
/// with each failure, at most `MAX_DELAY`.
pub fn delay_after(failures: u32, free: u32) -> Option<Duration> {
    let over = failures.checked_sub(free)?;
    let factor = 1_i32.checked_shl(over.min(16)).unwrap_or(i32::MAX);
    Some((FIRST_DELAY * factor).min(MAX_DELAY))
}

/// Why a login attempt is refused before its password is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An administrator locked the account.
    AdminLocked,
    /// [`MAX_FAILURES`] consecutive failures: an administrator must unlock.
    Suspended,
    /// Too many recent failures: wait (unless the situation is known).
    Throttled,
}

/// What a failed attempt changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureEffect {
    /// Still within the free failures.
    Counted,
    /// The next attempt must wait (from an unknown situation).
    Throttled,
    /// The account now needs an administrator.
    Suspended,
}

/// An account's login state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginState {
    /// Consecutive failures since the last success (or unlock).
    pub failed: u32,
    /// Attempts from an unknown situation are refused until then.
    pub throttled_until: Option<OffsetDateTime>,
    /// Locked by an administrator: only an administrator's unlock ends it.
    pub admin_locked: bool,
}

impl LoginState {
    /// Whether an attempt at `now` is refused before the password is
    /// checked; `known_situation` is true when it comes from where the
    /// account's owner signed in before.
    pub fn refusal(&self, now: OffsetDateTime, known_situation: bool) -> Option<Refusal> {
        if self.admin_locked {
            Some(Refusal::AdminLocked)
        } else if self.failed >= MAX_FAILURES {
            Some(Refusal::Suspended)
        } else if !known_situation && self.throttled_until.is_some_and(|t| now < t) {
            Some(Refusal::Throttled)
        } else {
            None
        }
    }

    /// Whether nobody can sign in now without an administrator (locked or
    /// suspended), or strangers must wait (throttled).
    pub fn is_locked(&self, now: OffsetDateTime) -> bool {
        self.refusal(now, false).is_some()
    }

    /// The state after a failed attempt at `now`, and what it changed.
    pub fn after_failure(&self, now: OffsetDateTime) -> (Self, FailureEffect) {
        let failed = self.failed.saturating_add(1);
        let effect = if failed >= MAX_FAILURES {
            FailureEffect::Suspended
        } else if failed >= FREE_FAILURES {
            FailureEffect::Throttled
        } else {
            FailureEffect::Counted
        };
        let next = Self {
            failed,
            throttled_until: delay_after(failed, FREE_FAILURES).map(|d| now + d),
            admin_locked: self.admin_locked,
        };
        (next, effect)
    }

    /// The state after a successful sign-in: the failures are forgotten.
    pub fn after_success(&self) -> Self {
        Self {
            admin_locked: self.admin_locked,
            ..Self::default()
        }
    }

    /// The state after a password reset: throttling ends; an
    /// administrator's lock and a suspension stand.
    pub fn after_reset(&self) -> Self {
        if self.failed >= MAX_FAILURES {
            return *self;
        }
        self.after_success()
    }
}

/// Consecutive failures from one client address (across accounts and
/// organizations) before its attempts are delayed; higher than an
/// account's because many people may share an address.
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// An address's failures are forgotten after this long without one.
pub const ADDRESS_MEMORY: Duration = Duration::hours(24);

/// Failed attempts from one client address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressState {
    /// Failures (forgotten after [`ADDRESS_MEMORY`] without one).
    pub failures: u32,
    /// The last failure.
    pub last_failure: Option<OffsetDateTime>,
    /// No attempt from this address before this time.
    pub throttled_until: Option<OffsetDateTime>,
}

impl AddressState {
    /// How long an attempt at `now` must still wait, if at all.
    pub fn wait(&self, now: OffsetDateTime) -> Option<Duration> {
        self.throttled_until.filter(|t| now < *t).map(|t| t - now)
    }

    /// The state after a failure at `now`. Successes never reset it: an
    /// attacker signing in to an account of their own must not buy more
    /// guesses at others.
    pub fn after_failure(&self, now: OffsetDateTime) -> Self {
        let remembered = self.last_failure.is_some_and(|t| now - t < ADDRESS_MEMORY);
        let failures = if remembered {
            self.failures.saturating_add(1)
        } else {
            1
        };
        Self {
            failures,
            last_failure: Some(now),
            throttled_until: delay_after(failures, ADDRESS_FREE_FAILURES).map(|d| now + d),
        }
    }
}

/// Session lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// No session outlives this, however active.
    pub absolute: Duration,
    /// A refresh token presented again this soon after its use (two tabs
    /// refreshing at once) gets the same successor instead of revoking
    /// the session.
    pub grace: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::minutes(30),
            absolute: Duration::hours(12),
            grace: Duration::seconds(10),
        }
    }
}

/// Whether a refresh token used at `used_at` and presented again at `now`
/// is within the grace window (a concurrent refresh, not a replay). Two
/// racing requests read the clock in either order, so `now` may be a hair
/// before `used_at`.
pub fn within_grace(used_at: OffsetDateTime, now: OffsetDateTime, limits: SessionLimits) -> bool {
    (now - used_at).abs() <= limits.grace
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
    fn delays_start_after_the_free_failures_and_double_up_to_the_cap() {
        assert_eq!(delay_after(4, FREE_FAILURES), None);
        assert_eq!(delay_after(5, FREE_FAILURES), Some(Duration::minutes(1)));
        assert_eq!(delay_after(6, FREE_FAILURES), Some(Duration::minutes(2)));
        assert_eq!(delay_after(9, FREE_FAILURES), Some(Duration::minutes(16)));
        assert_eq!(delay_after(10, FREE_FAILURES), Some(MAX_DELAY));
        assert_eq!(delay_after(u32::MAX, FREE_FAILURES), Some(MAX_DELAY));
    }

    #[test]
    fn a_strangers_failures_throttle_strangers_but_not_the_owner() {
        let mut state = LoginState::default();
        for i in 1..FREE_FAILURES {
            let (next, effect) = state.after_failure(T0);
            assert_eq!(effect, FailureEffect::Counted, "failure {i}");
            assert_eq!(next.refusal(T0, false), None);
            state = next;
        }
        let (state, effect) = state.after_failure(T0);
        assert_eq!(effect, FailureEffect::Throttled);
        assert_eq!(state.refusal(T0, false), Some(Refusal::Throttled));
        assert_eq!(
            state.refusal(T0, true),
            None,
            "the owner from a known situation is not refused"
        );
        assert_eq!(state.refusal(T0 + Duration::minutes(1), false), None);
        assert_eq!(state.after_success(), LoginState::default());
    }

    #[test]
    fn a_hundred_failures_need_an_administrator_and_a_reset_does_not_reopen() {
        let mut state = LoginState::default();
        let mut now = T0;
        for _ in 0..MAX_FAILURES - 1 {
            state = state.after_failure(now).0;
            now += MAX_DELAY;
        }
        let (suspended, effect) = state.after_failure(now);
        assert_eq!(effect, FailureEffect::Suspended);
        for known in [false, true] {
            assert_eq!(
                suspended.refusal(now + Duration::days(30), known),
                Some(Refusal::Suspended)
            );
        }
        assert_eq!(suspended.after_reset(), suspended);
    }

    #[test]
    fn only_an_administrator_ends_an_administrators_lock() {
        let locked = LoginState {
            admin_locked: true,
            ..LoginState::default()
        };
        for known in [false, true] {
            assert_eq!(locked.refusal(T0, known), Some(Refusal::AdminLocked));
        }
        assert!(locked.after_reset().admin_locked, "a reset keeps the lock");
        assert!(locked.after_success().admin_locked);
        assert!(locked.after_failure(T0).0.admin_locked);
        let throttled = LoginState::default().after_failure(T0).0;
        let throttled = (0..10).fold(throttled, |s, _| s.after_failure(T0).0);
        assert_eq!(
            throttled.after_reset(),
            LoginState::default(),
            "a reset ends throttling"
        );
    }

    #[test]
    fn addresses_are_throttled_after_their_free_failures_and_forget_after_a_day() {
        let mut state = AddressState::default();
        for _ in 0..ADDRESS_FREE_FAILURES - 1 {
            state = state.after_failure(T0);
            assert_eq!(state.wait(T0), None);
        }
        state = state.after_failure(T0);
        assert_eq!(state.wait(T0), Some(FIRST_DELAY));
        let later = T0 + ADDRESS_MEMORY + Duration::seconds(1);
        assert_eq!(state.after_failure(later).failures, 1, "forgotten");
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

    #[test]
    fn a_repeat_within_seconds_is_grace_and_later_is_reuse() {
        let limits = SessionLimits::default();
        assert!(within_grace(T0, T0, limits));
        assert!(within_grace(T0, T0 + Duration::seconds(10), limits));
        assert!(!within_grace(T0, T0 + Duration::seconds(11), limits));
        assert!(
            within_grace(T0, T0 - Duration::milliseconds(3), limits),
            "racing clocks"
        );
        assert!(!within_grace(T0, T0 - Duration::seconds(11), limits));
    }
}
