//! The administrative changes to a user (roles, lock, unlock,
//! deactivate), shared by local accounts ([`crate::local::admin`]) and
//! identity-provider subjects ([`crate::subjects`]).

use crate::RoleSet;

/// An administrative change to an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminChange {
    /// Replace the roles (ends the user's sessions).
    Roles(RoleSet),
    /// Refuse logins until unlocked (ends the user's sessions).
    Lock,
    /// Clear a lock and the failure count.
    Unlock,
    /// Disable the account for good (ends the user's sessions).
    Deactivate,
    /// Remove the second factor (TOTP) of a local account that lost it:
    /// the user signs in with the password alone and enrols again; their
    /// sessions end.
    ResetMfa,
}

impl AdminChange {
    /// The security-event kind recorded for it.
    pub fn event(self) -> &'static str {
        match self {
            Self::Roles(_) => "user_roles_changed",
            Self::Lock => "user_locked",
            Self::Unlock => "user_unlocked",
            Self::Deactivate => "user_deactivated",
            Self::ResetMfa => "user_mfa_reset",
        }
    }

    /// Whether the user's sessions end with it.
    pub fn ends_sessions(self) -> bool {
        !matches!(self, Self::Unlock)
    }
}
