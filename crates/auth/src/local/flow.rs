//! The login, refresh and logout use cases, composed from the ports and
//! the pure policies. Every failure of a login looks the same to the caller.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::{
    AccessClaims, AccessTokenIssuer, Account, AccountStore, Email, LoginState, Rotation, SessionId,
    SessionLimits, SessionStore, verify_password,
};
use crate::AuthError;

const REFRESH_PREFIX: &str = "crt_";

/// An opaque refresh token: `crt_<org id>_<256 random bits>`. Only its
/// SHA-256 is stored; the org part routes the lookup to the right tenant.
pub struct RefreshToken;

impl RefreshToken {
    /// A new token for `org` and the hash to store.
    pub fn generate(org: OrgId) -> (SecretString, [u8; 32]) {
        let random: [u8; 32] = rand::random();
        let token = format!(
            "{REFRESH_PREFIX}{}_{}",
            org.as_uuid().simple(),
            URL_SAFE_NO_PAD.encode(random)
        );
        let hash = Self::hash(&token);
        (SecretString::from(token), hash)
    }

    /// The org and hash of a presented token, if it has the right shape.
    pub fn parse(presented: &SecretString) -> Option<(OrgId, [u8; 32])> {
        let raw = presented.expose_secret();
        if raw.len() > 128 {
            return None;
        }
        let rest = raw.strip_prefix(REFRESH_PREFIX)?;
        let (org, random) = rest.split_once('_')?;
        let org = uuid::Uuid::try_parse(org).ok()?;
        let bytes = URL_SAFE_NO_PAD.decode(random).ok()?;
        (bytes.len() == 32).then(|| (OrgId::from_uuid(org), Self::hash(raw)))
    }

    fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }
}

/// Tokens handed to a client after login or refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    /// Short-lived signed access token.
    pub access_token: SecretString,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// Single-use refresh token.
    pub refresh_token: SecretString,
    /// The session both belong to.
    pub session: SessionId,
}

/// Local-account authentication over its ports.
#[derive(Debug)]
pub struct LocalAuth<A, S, T> {
    /// Accounts.
    pub accounts: A,
    /// Sessions.
    pub sessions: S,
    /// Access-token signer.
    pub tokens: T,
    /// Session lifetimes.
    pub limits: SessionLimits,
}

/// A tenant context for a system action (no user yet).
pub(super) fn system(org: OrgId, what: &str) -> TenantContext {
    let actor = SubjectId::parse(what).unwrap_or_else(|_| unreachable!("static subject"));
    TenantContext::new(org, actor)
}

impl<A: AccountStore, S: SessionStore, T: AccessTokenIssuer> LocalAuth<A, S, T> {
    /// Password login. Unknown user, wrong password, locked or inactive
    /// account: all [`AuthError::InvalidCredentials`], after the same
    /// amount of hashing work.
    pub async fn login(
        &self,
        org: OrgId,
        email: &str,
        password: &SecretString,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        let ctx = system(org, "system:login");
        let account = match Email::parse(email) {
            Some(email) => self.accounts.find_by_email(&ctx, &email).await?,
            None => None,
        };
        let Some(account) = account.filter(|a| a.active && !a.login.is_locked(now)) else {
            verify_password(password, None);
            return Err(AuthError::InvalidCredentials);
        };
        if !verify_password(password, account.password_hash.as_deref()) {
            let (state, locked_now) = account.login.after_failure(now);
            self.accounts
                .record_login(&ctx, account.id, state, locked_now)
                .await?;
            return Err(AuthError::InvalidCredentials);
        }
        if account.login != LoginState::default() {
            self.accounts
                .record_login(&ctx, account.id, LoginState::after_success(), false)
                .await?;
        }
        let (refresh_token, hash) = RefreshToken::generate(org);
        let session = self
            .sessions
            .start(&ctx, account.id, &["pwd"], hash, now)
            .await?;
        self.issue(&account, session, refresh_token, now)
    }

    /// Exchanges a refresh token for a new pair. A reused token revokes its
    /// whole session (the store records the event).
    pub async fn refresh(
        &self,
        presented: &SecretString,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        let (org, hash) = RefreshToken::parse(presented)
            .ok_or(AuthError::InvalidToken("malformed refresh token"))?;
        let ctx = system(org, "system:refresh");
        let (next, next_hash) = RefreshToken::generate(org);
        match self
            .sessions
            .rotate(&ctx, hash, next_hash, now, self.limits)
            .await?
        {
            Rotation::Rotated { session, account } => self.issue(&account, session, next, now),
            Rotation::Reused => Err(AuthError::InvalidToken(
                "refresh token reused; session revoked",
            )),
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
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        let claims = AccessClaims {
            user: account.id,
            org: account.org,
            roles: account.roles,
            session,
            amr: vec!["pwd".into()],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_their_org_and_hash_consistently() {
        let org = OrgId::generate();
        let (token, hash) = RefreshToken::generate(org);
        assert!(token.expose_secret().starts_with("crt_"));
        assert_eq!(RefreshToken::parse(&token), Some((org, hash)));
        let (other, other_hash) = RefreshToken::generate(org);
        assert_ne!(hash, other_hash);
        assert_ne!(token.expose_secret(), other.expose_secret());
        for bad in [
            "",
            "crt_",
            "crt_nope_abc",
            "xyz_0190d5a4000070008000000000000001_AAAA",
            &"crt_".repeat(50),
        ] {
            assert_eq!(
                RefreshToken::parse(&SecretString::from(bad.to_owned())),
                None,
                "{bad}"
            );
        }
    }
}
