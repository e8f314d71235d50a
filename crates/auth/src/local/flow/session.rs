//! Sessions: starting one, refreshing, logging out, and impersonation.

use carapace_audit::SecurityEventKind;
use carapace_tenancy::TenantContext;
use secrecy::SecretString;
use time::OffsetDateTime;

use super::super::mfa::MfaStore;
use super::super::{
    AccessClaims, AccessTokenIssuer, Account, AccountStore, AddressThrottle, Rotation, SessionId,
    SessionStore, UserId,
};
use super::{IssuedTokens, LocalAuth, RefreshToken, system};
use crate::{AuthError, Principal};

impl<A, S, T> LocalAuth<A, S, T>
where
    A: AccountStore + MfaStore + AddressThrottle,
    S: SessionStore,
    T: AccessTokenIssuer,
{
    /// An admin (with MFA) acts as `target`, a non-admin active user of the
    /// same organization: a 15-minute access token (no refresh) whose `act`
    /// names the admin, backed by its own session so it can be ended.
    pub async fn impersonate(
        &self,
        admin: &Principal,
        target: UserId,
        now: OffsetDateTime,
    ) -> Result<(SecretString, u64), AuthError> {
        if !admin.mfa() {
            return Err(AuthError::StepUpRequired);
        }
        if admin.actor().is_some() {
            return Err(AuthError::InvalidRequest(
                "an impersonated session cannot impersonate",
            ));
        }
        let ctx = admin.tenant();
        let account = self
            .accounts
            .find_by_id(&ctx, target)
            .await?
            .filter(|a| a.active)
            .ok_or(AuthError::NotFound)?;
        if account.roles.contains(crate::Role::Admin) {
            return Err(AuthError::InvalidRequest(
                "administrators cannot be impersonated",
            ));
        }
        // A session without a usable refresh token: only its hash exists.
        let (_, unusable) = RefreshToken::generate(ctx.org());
        let session = self
            .sessions
            .start(&ctx, account.id, &["imp"], unusable, now)
            .await?;
        let claims = AccessClaims {
            user: account.id,
            org: account.org,
            roles: account.roles,
            session,
            amr: vec!["imp".into()],
            act: Some(admin.subject().as_str().to_owned()),
        };
        self.tokens.issue(&claims, now)
    }

    pub(super) async fn start(
        &self,
        ctx: &TenantContext,
        account: &Account,
        amr: &[&str],
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        let (refresh_token, hash) = RefreshToken::generate(ctx.org());
        let session = self.sessions.start(ctx, account.id, amr, hash, now).await?;
        self.issue(
            account,
            session,
            refresh_token,
            amr.iter().map(|m| (*m).to_owned()).collect(),
            now,
        )
    }

    /// Exchanges a refresh token for a new pair. The same token presented
    /// again within the grace window (two tabs at once) gets the same
    /// successor; any later reuse revokes the whole session (the store
    /// records the event).
    pub async fn refresh(
        &self,
        presented: &SecretString,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        let (org, hash) = RefreshToken::parse(presented)
            .ok_or(AuthError::InvalidToken("malformed refresh token"))?;
        let ctx = system(org, "system:refresh");
        let (next, next_hash) = RefreshToken::generate(org);
        let sealed_next = RefreshToken::seal_successor(presented, &next)?;
        match self
            .sessions
            .rotate(&ctx, hash, next_hash, sealed_next, now, self.limits)
            .await?
        {
            Rotation::Rotated {
                session,
                account,
                amr,
            } => self.issue(&account, session, next, amr, now),
            Rotation::Repeated {
                session,
                account,
                amr,
                sealed_successor,
            } => {
                let same = RefreshToken::open_successor(presented, &sealed_successor)?;
                self.issue(&account, session, same, amr, now)
            }
            Rotation::Reused => {
                self.record(
                    SecurityEventKind::RefreshTokenReused,
                    org,
                    None,
                    "spent refresh token presented; session revoked",
                )
                .await?;
                Err(AuthError::InvalidToken(
                    "refresh token reused; session revoked",
                ))
            }
            Rotation::Invalid => Err(AuthError::InvalidToken(
                "unknown, revoked or expired refresh token",
            )),
        }
    }

    /// Ends the session of a refresh token. Idempotent: unknown tokens are fine.
    pub async fn logout(
        &self,
        presented: &SecretString,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        if let Some((org, hash)) = RefreshToken::parse(presented) {
            self.sessions
                .revoke_by_token(&system(org, "system:logout"), hash, now)
                .await?;
        }
        Ok(())
    }

    fn issue(
        &self,
        account: &Account,
        session: SessionId,
        refresh_token: SecretString,
        amr: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        let claims = AccessClaims {
            user: account.id,
            org: account.org,
            roles: account.roles,
            session,
            amr,
            act: None,
        };
        let (access_token, expires_in) = self.tokens.issue(&claims, now)?;
        Ok(IssuedTokens {
            access_token,
            expires_in,
            refresh_token,
            session,
        })
    }
}
