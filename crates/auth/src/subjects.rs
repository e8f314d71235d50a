//! Identity-provider subjects that an administrator locked or deactivated.
//!
//! An issuer's access token stays valid until it expires, whatever the
//! provider does meanwhile. So Carapace keeps, per organization and
//! subject, a standing: a lock or deactivation refuses every token of the
//! subject at once, and a not-before time refuses tokens issued before the
//! last lock even after an unlock. The check runs on every request, on
//! every instance, against the shared store.

use std::future::Future;

use carapace_tenancy::{SubjectId, TenantContext};
use time::OffsetDateTime;

use crate::AuthError;
use crate::admin_change::AdminChange;

/// What an administrator made of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectState {
    /// Its tokens work (issued after `not_before`).
    Active,
    /// Locked: no token works until an unlock.
    Locked,
    /// Deactivated for good.
    Deactivated,
}

impl SubjectState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Locked => "locked",
            Self::Deactivated => "deactivated",
        }
    }

    /// Parses a stored name; anything unknown is the strict choice.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "locked" => Self::Locked,
            _ => Self::Deactivated,
        }
    }
}

/// A subject's standing in one organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Locked, deactivated or active.
    pub state: SubjectState,
    /// Tokens issued before this are refused.
    pub not_before: OffsetDateTime,
}

/// Whether a token issued at `issued_at` (its `iat`; `None` when it has
/// none) is honoured for a subject with `standing` (`None`: never changed
/// by an administrator).
pub fn admits(standing: Option<&Standing>, issued_at: Option<OffsetDateTime>) -> bool {
    match standing {
        None => true,
        Some(s) => {
            s.state == SubjectState::Active && issued_at.is_some_and(|iat| iat >= s.not_before)
        }
    }
}

/// The standing after `change` at `now`. A lock or deactivation refuses
/// every token issued until then; an unlock lets new tokens through but
/// never the ones issued before the lock. Roles of such subjects come from
/// the identity provider: changing them here is refused.
pub fn after_change(
    current: Option<Standing>,
    change: AdminChange,
    now: OffsetDateTime,
) -> Result<Standing, AuthError> {
    // `iat` has whole seconds: a token issued in the second of the lock
    // is refused too.
    let cutoff = now
        .replace_nanosecond(0)
        .map_or(now, |t| t + time::Duration::seconds(1));
    match (change, current) {
        (AdminChange::Roles(_), _) => Err(AuthError::InvalidRequest(
            "the roles of identity-provider users come from the provider",
        )),
        (AdminChange::ResetMfa, _) => Err(AuthError::InvalidRequest(
            "the second factor of identity-provider users is the provider's",
        )),
        (_, Some(s)) if s.state == SubjectState::Deactivated => Err(AuthError::InvalidRequest(
            "a deactivated user stays deactivated",
        )),
        (AdminChange::Lock, _) => Ok(Standing {
            state: SubjectState::Locked,
            not_before: cutoff,
        }),
        (AdminChange::Deactivate, _) => Ok(Standing {
            state: SubjectState::Deactivated,
            not_before: cutoff,
        }),
        (AdminChange::Unlock, current) => Ok(Standing {
            state: SubjectState::Active,
            not_before: current.map_or(now, |s| s.not_before),
        }),
    }
}

/// Storage of subjects' standings.
pub trait SubjectStore: Send + Sync {
    /// The subject's standing, if an administrator ever changed it.
    fn standing(
        &self,
        ctx: &TenantContext,
        subject: &SubjectId,
    ) -> impl Future<Output = Result<Option<Standing>, AuthError>> + Send;

    /// Stores `standing` (the outcome of `change`) in one transaction with
    /// a security event naming the acting admin and, on a lock or
    /// deactivation, the end of the subject's calendar feeds.
    fn set_standing(
        &self,
        ctx: &TenantContext,
        subject: &SubjectId,
        standing: Standing,
        change: AdminChange,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-06 12:00:00.5 UTC);

    #[test]
    fn a_lock_refuses_every_token_and_an_unlock_only_later_ones() {
        let locked = after_change(None, AdminChange::Lock, T0).unwrap_or_else(|e| panic!("{e}"));
        for iat in [
            T0 - time::Duration::hours(1),
            T0,
            T0 + time::Duration::hours(1),
        ] {
            assert!(!admits(Some(&locked), Some(iat)), "locked refuses {iat}");
        }
        let unlocked = after_change(
            Some(locked),
            AdminChange::Unlock,
            T0 + time::Duration::minutes(5),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !admits(Some(&unlocked), Some(datetime!(2026-12-06 12:00:00 UTC))),
            "issued in the second of the lock"
        );
        assert!(!admits(
            Some(&unlocked),
            Some(T0 - time::Duration::minutes(1))
        ));
        assert!(admits(
            Some(&unlocked),
            Some(datetime!(2026-12-06 12:00:01 UTC))
        ));
        assert!(
            !admits(Some(&unlocked), None),
            "no iat, no pass once a standing exists"
        );
        assert!(
            admits(None, None),
            "subjects nobody changed are not looked at"
        );
    }

    #[test]
    fn deactivation_is_final_and_roles_are_the_providers() {
        let gone =
            after_change(None, AdminChange::Deactivate, T0).unwrap_or_else(|e| panic!("{e}"));
        assert!(!admits(Some(&gone), Some(T0 + time::Duration::days(1))));
        assert!(after_change(Some(gone), AdminChange::Unlock, T0).is_err());
        assert!(after_change(None, AdminChange::Roles(crate::RoleSet::default()), T0).is_err());
    }
}
