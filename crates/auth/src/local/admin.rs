//! User administration (admin, with MFA, in the admin's own organization):
//! list, create (invite), change roles, lock, unlock, deactivate. Changes
//! that reduce access end the user's sessions; every change is recorded as
//! a security event in the same transaction.
//!
//! The users administered are local accounts and identity-provider
//! subjects (`oidc:<sub>`): locking or deactivating a subject refuses its
//! unexpired issuer tokens at once, on every instance
//! ([`crate::subjects`]).

use std::future::Future;

use carapace_tenancy::TenantContext;
use time::OffsetDateTime;

use carapace_tenancy::SubjectId;

use super::{Account, AccountStore, Email, Mailer, PasswordReset, ResetStore, UserId};
use crate::subjects::SubjectStore;

pub use crate::admin_change::AdminChange;
use crate::{AuthError, Principal, RoleSet};

/// Storage side of user administration.
pub trait AdminStore: Send + Sync {
    /// Every account of the organization.
    fn list(
        &self,
        ctx: &TenantContext,
    ) -> impl Future<Output = Result<Vec<Account>, AuthError>> + Send;

    /// Applies `change` to `user` in one transaction: the change, ending the
    /// user's sessions when [`AdminChange::ends_sessions`] (and, on a lock
    /// or deactivation, its unused reset codes and its calendar feeds), and
    /// a security event naming the acting admin. A lock sets the
    /// administrator's lock (only an unlock ends it); an unlock also ends
    /// throttling and a suspension. `false` if there is no such user.
    fn apply(
        &self,
        ctx: &TenantContext,
        user: UserId,
        change: AdminChange,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// Whom an administrative change is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    /// A local account, by id.
    Local(UserId),
    /// An identity-provider subject (`oidc:<sub>`).
    Issuer(SubjectId),
}

impl UserRef {
    /// A local account's UUID, or an issuer subject `oidc:<sub>`; `None`
    /// for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        if let Ok(id) = uuid::Uuid::try_parse(raw) {
            return Some(Self::Local(UserId::from_uuid(id)));
        }
        raw.strip_prefix(crate::issuer::SUBJECT_PREFIX)
            .filter(|sub| !sub.is_empty() && sub.len() <= 200)
            .and_then(|_| SubjectId::parse(raw).ok())
            .map(Self::Issuer)
    }

    /// The subject the user acts as in tokens.
    pub fn subject(&self) -> String {
        match self {
            Self::Local(id) => id.to_string(),
            Self::Issuer(s) => s.as_str().to_owned(),
        }
    }
}

/// Whether `account` is a practitioner's: it holds the clinician role.
pub fn is_practitioner(account: &Account) -> bool {
    account.roles.contains(crate::Role::Clinician)
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

impl<A, R, M> UserAdmin<A, R, M>
where
    A: AccountStore + AdminStore + SubjectStore,
    R: ResetStore,
    M: Mailer,
{
    /// The accounts of the admin's organization.
    pub async fn list(&self, admin: &Principal) -> Result<Vec<Account>, AuthError> {
        self.accounts.list(&admin.tenant()).await
    }

    /// The organization's practitioners: its accounts that hold the
    /// clinician role (active or not).
    pub async fn practitioners(&self, admin: &Principal) -> Result<Vec<Account>, AuthError> {
        let mut all = self.list(admin).await?;
        all.retain(is_practitioner);
        Ok(all)
    }

    /// Practitioner `id` of the admin's organization; `None` when it is no
    /// account there, or not a clinician's.
    pub async fn practitioner(
        &self,
        admin: &Principal,
        id: UserId,
    ) -> Result<Option<Account>, AuthError> {
        let found = self.accounts.find_by_id(&admin.tenant(), id).await?;
        Ok(found.filter(is_practitioner))
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

    /// Applies `change` to another user of the admin's organization: a
    /// local account, or an identity-provider subject (whose roles come
    /// from the provider, so only lock, unlock and deactivate apply).
    pub async fn change(
        &self,
        admin: &Principal,
        user: &UserRef,
        change: AdminChange,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        if admin.subject().as_str() == user.subject() {
            return Err(AuthError::InvalidRequest(
                "administrators cannot change their own account",
            ));
        }
        if let AdminChange::Roles(roles) = change
            && roles == RoleSet::default()
        {
            return Err(AuthError::InvalidRequest("at least one role is required"));
        }
        let ctx = admin.tenant();
        let done = match user {
            UserRef::Local(id) => self.accounts.apply(&ctx, *id, change, now).await?,
            UserRef::Issuer(subject) => {
                let current = self.accounts.standing(&ctx, subject).await?;
                let next = crate::subjects::after_change(current, change, now)?;
                self.accounts
                    .set_standing(&ctx, subject, next, change)
                    .await?;
                true
            }
        };
        if done {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_local_ids_or_issuer_subjects() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            UserRef::parse(&id.to_string()),
            Some(UserRef::Local(UserId::from_uuid(id)))
        );
        assert!(matches!(
            UserRef::parse("oidc:abc-123"),
            Some(UserRef::Issuer(_))
        ));
        for bad in [
            "",
            "oidc:",
            "abc",
            "service:x",
            "system:purge",
            "oidc:a\u{0}b",
        ] {
            assert_eq!(UserRef::parse(bad), None, "{bad:?}");
        }
        assert!(UserRef::parse(&format!("oidc:{}", "a".repeat(201))).is_none());
    }
}
