//! User administration (admin, with MFA, in the admin's own organization):
//! list, create (invite), change roles, lock, unlock, deactivate. Changes
//! that reduce access end the user's sessions; every change is recorded as
//! a security event in the same transaction.

use std::future::Future;

use carapace_tenancy::TenantContext;
use time::OffsetDateTime;

use super::{Account, AccountStore, Email, Mailer, PasswordReset, ResetStore, UserId};
use crate::{AuthError, Principal, RoleSet};

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
}

impl AdminChange {
    /// The security-event kind recorded for it.
    pub fn event(self) -> &'static str {
        match self {
            Self::Roles(_) => "user_roles_changed",
            Self::Lock => "user_locked",
            Self::Unlock => "user_unlocked",
            Self::Deactivate => "user_deactivated",
        }
    }

    /// Whether the user's sessions end with it.
    pub fn ends_sessions(self) -> bool {
        !matches!(self, Self::Unlock)
    }
}

/// Storage side of user administration.
pub trait AdminStore: Send + Sync {
    /// Every account of the organization.
    fn list(
        &self,
        ctx: &TenantContext,
    ) -> impl Future<Output = Result<Vec<Account>, AuthError>> + Send;

    /// Applies `change` to `user` in one transaction: the change, ending the
    /// user's sessions when [`AdminChange::ends_sessions`], and a security
    /// event naming the acting admin. `false` if there is no such user.
    fn apply(
        &self,
        ctx: &TenantContext,
        user: UserId,
        change: AdminChange,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// User administration over its ports. Authorization (admin + MFA) is the
/// route's; this refuses only what no admin may do (acting on oneself).
#[derive(Debug)]
pub struct UserAdmin<A, R, M> {
    /// Accounts.
    pub accounts: A,
    /// Invitations reuse the password-reset flow.
    pub invitations: PasswordReset<A, R, M>,
}

impl<A: AccountStore + AdminStore, R: ResetStore, M: Mailer> UserAdmin<A, R, M> {
    /// The accounts of the admin's organization.
    pub async fn list(&self, admin: &Principal) -> Result<Vec<Account>, AuthError> {
        self.accounts.list(&admin.tenant()).await
    }

    /// Creates an account without a password and mails it a code to set
    /// one (the reset flow).
    pub async fn invite(
        &self,
        admin: &Principal,
        email: &str,
        roles: RoleSet,
        now: OffsetDateTime,
    ) -> Result<Account, AuthError> {
        let email = Email::parse(email)
            .ok_or(AuthError::InvalidRequest("email is not an e-mail address"))?;
        if roles == RoleSet::default() {
            return Err(AuthError::InvalidRequest("at least one role is required"));
        }
        let ctx = admin.tenant();
        let account = self.accounts.create(&ctx, &email, None, roles).await?;
        self.invitations
            .request(ctx.org(), email.as_str(), now)
            .await?;
        Ok(account)
    }

    /// Applies `change` to another user of the admin's organization.
    pub async fn change(
        &self,
        admin: &Principal,
        user: UserId,
        change: AdminChange,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        if admin.subject().as_str() == user.to_string() {
            return Err(AuthError::InvalidRequest(
                "administrators cannot change their own account",
            ));
        }
        if let AdminChange::Roles(roles) = change
            && roles == RoleSet::default()
        {
            return Err(AuthError::InvalidRequest("at least one role is required"));
        }
        if self
            .accounts
            .apply(&admin.tenant(), user, change, now)
            .await?
        {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }
}
