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
    /// Stores a reset token for `user`, valid until `expires_at`, and in
    /// the same transaction voids every earlier unused one of the user:
    /// only the newest code works.
    fn create(
        &self,
        ctx: &TenantContext,
        user: UserId,
        token_hash: [u8; 32],
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// In one transaction: spends the unexpired, unused token hashing to
    /// `token_hash` of an active account that no administrator locked,
    /// voids the account's other codes, sets its password hash, ends its
    /// throttling ([`super::LoginState::after_reset`]: never an
    /// administrator's lock), revokes all its sessions and records a
    /// security event. The account, or `None` if there was no such usable
    /// token (nothing changes then; a code whose account can no longer use
    /// it is spent all the same).
    fn complete(
        &self,
        ctx: &TenantContext,
        token_hash: [u8; 32],
        new_password_hash: String,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<UserId>, AuthError>> + Send;
}

/// A reset code: `crr_…` (see `crate::opaque`), 70 characters, so it
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

/// The notice sent to an account's address after its password was reset:
/// no code, no link, nothing usable.
pub fn reset_notice(to: Email) -> OutgoingMail {
    OutgoingMail {
        to,
        subject: "Your Carapace password was changed".into(),
        body: SecretString::from(
            "The password of this account was just changed with a reset code, and every \
             session of the account was ended.\n\n\
             If this was you, nothing more is needed. If it was not, contact your \
             organization's administrator at once.\n"
                .to_owned(),
        ),
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
    /// Sends a reset code to the account's address, if the account exists,
    /// is active and no administrator locked it; earlier codes stop working.
    /// Returns `Ok` either way: callers answer the same whether or not the
    /// account exists.
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
            .filter(|a| a.active && !a.login.admin_locked)
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
    /// ends, every other code is void, and the account's address gets a
    /// notice (without any code). [`AuthError::WeakPassword`] if the
    /// password breaks the rules, [`AuthError::InvalidToken`] if the code
    /// is unknown, used, void or expired, or its account was locked or
    /// deactivated since.
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
        if let Some(user) = self.resets.complete(&ctx, hash, new_hash, now).await? {
            self.record(
                carapace_audit::SecurityEventKind::PasswordReset,
                org,
                Some(user),
                "password set with a reset code; sessions ended; notice mailed",
            )
            .await?;
            // The change is made; a notice that cannot go out is recorded,
            // not a reason to answer as if the reset had failed.
            let account = self.accounts.find_by_id(&ctx, user).await?;
            let sent = match account {
                Some(a) => self.mailer.send(reset_notice(a.email)).await.is_ok(),
                None => false,
            };
            if !sent {
                self.record(
                    carapace_audit::SecurityEventKind::PasswordReset,
                    org,
                    Some(user),
                    "the notice of this reset could not be mailed",
                )
                .await?;
            }
            Ok(())
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
