//! Password reset: a 256-bit single-use token, stored only as a hash,
//! valid 30 minutes, delivered only by e-mail through the [`Mailer`] port.

use std::future::Future;

use carapace_tenancy::{OrgId, TenantContext};
use secrecy::{ExposeSecret as _, SecretString};
use time::{Duration, OffsetDateTime};

use super::{Email, UserId};
use crate::AuthError;

/// How long a reset token is valid.
pub const RESET_TTL: Duration = Duration::minutes(30);
const PREFIX: &str = "crr_";

/// An e-mail to send. The body may hold a secret (a reset token).
#[derive(Debug)]
pub struct OutgoingMail {
    /// Recipient.
    pub to: Email,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: SecretString,
}

/// Sends e-mail.
pub trait Mailer: Send + Sync {
    /// Delivers `mail` (or fails; the caller decides what that means).
    fn send(&self, mail: OutgoingMail) -> impl Future<Output = Result<(), AuthError>> + Send;
}

/// Storage of reset tokens (hashes only).
pub trait ResetStore: Send + Sync {
    /// Stores a reset token for `user`, valid until `expires_at`.
    fn create(
        &self,
        ctx: &TenantContext,
        user: UserId,
        token_hash: [u8; 32],
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// In one transaction: spends the unexpired, unused token hashing to
    /// `token_hash`, sets the account's password hash, clears its lockout,
    /// revokes all its sessions and records a security event. `false` if
    /// there was no such usable token (nothing changes then).
    fn complete(
        &self,
        ctx: &TenantContext,
        token_hash: [u8; 32],
        new_password_hash: String,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// A reset code: `crr_…` (see [`crate::opaque`]), 70 characters, so it
/// fits one line of a 7-bit mail body.
pub struct ResetToken;

impl ResetToken {
    /// A new token for `org` and the hash to store.
    pub fn generate(org: OrgId) -> (SecretString, [u8; 32]) {
        crate::opaque::generate(PREFIX, org)
    }

    /// The org and hash of a presented token, if it has the right shape.
    pub fn parse(presented: &SecretString) -> Option<(OrgId, [u8; 32])> {
        crate::opaque::parse(PREFIX, presented)
    }
}

/// The e-mail that carries a reset token.
pub fn reset_mail(to: Email, token: &SecretString) -> OutgoingMail {
    OutgoingMail {
        to,
        subject: "Reset your Carapace password".into(),
        body: SecretString::from(format!(
            "Someone asked to reset the password of this account.\n\n\
             Reset code (valid for 30 minutes, usable once):\n\n{}\n\n\
             If it was not you, ignore this message; your password is unchanged.\n",
            token.expose_secret()
        )),
    }
}

/// The password-reset use case.
pub struct PasswordReset<A, R, M> {
    /// Accounts.
    pub accounts: A,
    /// Reset tokens.
    pub resets: R,
    /// Mail delivery.
    pub mailer: M,
    /// Where reset events go (issued, completed, refused). Fails closed.
    pub events: std::sync::Arc<dyn carapace_audit::SecurityEventSink>,
}

impl<A, R, M> std::fmt::Debug for PasswordReset<A, R, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordReset").finish_non_exhaustive()
    }
}

impl<A, R, M> PasswordReset<A, R, M> {
    async fn record(
        &self,
        kind: carapace_audit::SecurityEventKind,
        org: OrgId,
        account: Option<super::UserId>,
        detail: &str,
    ) -> Result<(), AuthError> {
        super::record_event(&*self.events, kind, org, account, detail).await
    }
}

impl<A: super::AccountStore, R: ResetStore, M: Mailer> PasswordReset<A, R, M> {
    /// Sends a reset code to the account's address, if the account exists
    /// and is active. Returns `Ok` either way: callers answer the same
    /// whether or not the account exists.
    pub async fn request(
        &self,
        org: OrgId,
        email: &str,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let Some(email) = Email::parse(email) else {
            return Ok(());
        };
        let ctx = super::flow::system(org, "system:reset");
        let Some(account) = self
            .accounts
            .find_by_email(&ctx, &email)
            .await?
            .filter(|a| a.active)
        else {
            return Ok(());
        };
        let (token, hash) = ResetToken::generate(org);
        self.resets
            .create(&ctx, account.id, hash, now + RESET_TTL)
            .await?;
        self.record(
            carapace_audit::SecurityEventKind::PasswordResetRequested,
            org,
            Some(account.id),
            "reset code mailed",
        )
        .await?;
        self.mailer.send(reset_mail(account.email, &token)).await
    }

    /// Sets a new password with a reset code; every session of the account
    /// ends. [`AuthError::WeakPassword`] if the password breaks the rules,
    /// [`AuthError::InvalidToken`] if the code is unknown, used or expired.
    pub async fn confirm(
        &self,
        token: &SecretString,
        new_password: &SecretString,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        super::check_new_password(new_password).map_err(AuthError::WeakPassword)?;
        let (org, hash) =
            ResetToken::parse(token).ok_or(AuthError::InvalidToken("malformed reset code"))?;
        let new_hash = super::hash_password(new_password)?;
        let ctx = super::flow::system(org, "system:reset");
        if self.resets.complete(&ctx, hash, new_hash, now).await? {
            self.record(
                carapace_audit::SecurityEventKind::PasswordReset,
                org,
                None,
                "password set with a reset code; sessions ended",
            )
            .await
        } else {
            self.record(
                carapace_audit::SecurityEventKind::PasswordResetFailed,
                org,
                None,
                "unknown, used or expired reset code",
            )
            .await?;
            Err(AuthError::InvalidToken(
                "unknown, used or expired reset code",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_typed_and_never_parse_as_refresh_tokens() {
        let org = OrgId::generate();
        let (t, h) = ResetToken::generate(org);
        assert_eq!(ResetToken::parse(&t), Some((org, h)));
        assert_eq!(t.expose_secret().len(), 70);
        assert_eq!(crate::local::RefreshToken::parse(&t), None);
        let (refresh, _) = crate::local::RefreshToken::generate(org);
        assert_eq!(ResetToken::parse(&refresh), None);
    }
}
