//! The login, refresh and logout use cases, composed from the ports and
//! the pure policies. Every failure of a login looks the same to the caller.

use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use std::sync::Arc;

use carapace_audit::{SecurityEventKind, SecurityEventSink};
use carapace_phi_crypto::SecretSealer;

use super::mfa::{self, MfaStore};
use super::{
    AccessClaims, AccessTokenIssuer, Account, AccountStore, Email, LoginState, Rotation, SessionId,
    SessionLimits, SessionStore, UserId, verify_password,
};
use crate::{AuthError, Principal};

const REFRESH_PREFIX: &str = "crt_";

/// An opaque refresh token (`crt_…`, see [`crate::opaque`]).
pub struct RefreshToken;

impl RefreshToken {
    /// A new token for `org` and the hash to store.
    pub fn generate(org: OrgId) -> (SecretString, [u8; 32]) {
        crate::opaque::generate(REFRESH_PREFIX, org)
    }

    /// The org and hash of a presented token, if it has the right shape.
    pub fn parse(presented: &SecretString) -> Option<(OrgId, [u8; 32])> {
        crate::opaque::parse(REFRESH_PREFIX, presented)
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

/// What a password login led to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Signed in.
    Tokens(IssuedTokens),
    /// The account has MFA: present a code with this challenge.
    MfaRequired {
        /// The challenge token.
        challenge: SecretString,
        /// Its lifetime in seconds.
        expires_in: u64,
    },
}

/// A started (not yet active) TOTP enrolment.
#[derive(Debug)]
pub struct TotpEnrolment {
    /// `otpauth://` URI for authenticator apps.
    pub otpauth_uri: SecretString,
}

/// Local-account authentication over its ports.
pub struct LocalAuth<A, S, T> {
    /// Accounts (and their MFA state).
    pub accounts: A,
    /// Sessions.
    pub sessions: S,
    /// Token signer.
    pub tokens: T,
    /// Session lifetimes.
    pub limits: SessionLimits,
    /// Seals TOTP seeds at rest.
    pub sealer: Arc<dyn SecretSealer>,
    /// Where authentication events go (logins, failures, lockouts, MFA
    /// changes, refresh-token reuse). Recording fails closed.
    pub events: Arc<dyn SecurityEventSink>,
}

impl<A, S, T> std::fmt::Debug for LocalAuth<A, S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAuth")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A tenant context for a system action (no user yet).
pub(super) fn system(org: OrgId, what: &str) -> TenantContext {
    let actor = SubjectId::parse(what).unwrap_or_else(|_| unreachable!("static subject"));
    TenantContext::new(org, actor)
}

impl<A, S, T> LocalAuth<A, S, T> {
    /// Records an authentication event about `account` in `org`.
    async fn record(
        &self,
        kind: SecurityEventKind,
        org: OrgId,
        account: Option<UserId>,
        detail: &str,
    ) -> Result<(), AuthError> {
        super::record_event(&*self.events, kind, org, account, detail).await
    }
}

impl<A: AccountStore + MfaStore, S: SessionStore, T: AccessTokenIssuer> LocalAuth<A, S, T> {
    /// Password login. Unknown user, wrong password, locked or inactive
    /// account: all [`AuthError::InvalidCredentials`], after the same
    /// amount of hashing work.
    pub async fn login(
        &self,
        org: OrgId,
        email: &str,
        password: &SecretString,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, AuthError> {
        let ctx = system(org, "system:login");
        let account = match Email::parse(email) {
            Some(email) => self.accounts.find_by_email(&ctx, &email).await?,
            None => None,
        };
        let Some(account) = account.filter(|a| a.active && !a.login.is_locked(now)) else {
            verify_password(password, None);
            if org.as_uuid() != uuid::Uuid::nil() {
                self.record(
                    SecurityEventKind::LoginFailed,
                    org,
                    None,
                    "unknown, inactive or locked account",
                )
                .await?;
            }
            return Err(AuthError::InvalidCredentials);
        };
        if !verify_password(password, account.password_hash.as_deref()) {
            let (state, locked_now) = account.login.after_failure(now);
            self.accounts
                .record_login(&ctx, account.id, state, locked_now)
                .await?;
            self.record(
                SecurityEventKind::LoginFailed,
                org,
                Some(account.id),
                "wrong password",
            )
            .await?;
            if locked_now {
                self.record(
                    SecurityEventKind::AccountLocked,
                    org,
                    Some(account.id),
                    "too many failures",
                )
                .await?;
            }
            return Err(AuthError::InvalidCredentials);
        }
        self.record(
            SecurityEventKind::LoginSucceeded,
            org,
            Some(account.id),
            if account.mfa_enabled {
                "password; second factor required"
            } else {
                "password"
            },
        )
        .await?;
        if account.mfa_enabled {
            // Failures so far stand until the second factor succeeds.
            let (challenge, expires_in) = self.tokens.issue_challenge(org, account.id, now)?;
            return Ok(LoginOutcome::MfaRequired {
                challenge,
                expires_in,
            });
        }
        if account.login != LoginState::default() {
            self.accounts
                .record_login(&ctx, account.id, LoginState::after_success(), false)
                .await?;
        }
        self.start(&ctx, &account, &["pwd"], now)
            .await
            .map(LoginOutcome::Tokens)
    }

    /// Completes a login with a TOTP code or a recovery code. Wrong codes
    /// count towards the lockout; a code is accepted once.
    pub async fn verify_mfa(
        &self,
        challenge: &SecretString,
        code: &SecretString,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        let (org, user) = self.tokens.verify_challenge(challenge)?;
        let ctx = system(org, "system:mfa");
        let account = self
            .accounts
            .find_by_id(&ctx, user)
            .await?
            .filter(|a| a.active && a.mfa_enabled && !a.login.is_locked(now))
            .ok_or(AuthError::InvalidCredentials)?;
        let accepted = match self.accounts.totp_state(&ctx, user).await? {
            Some(state) if state.enabled => {
                self.second_factor(&ctx, user, &state, code, now).await?
            }
            _ => false,
        };
        if !accepted {
            let (state, locked_now) = account.login.after_failure(now);
            self.accounts
                .record_login(&ctx, user, state, locked_now)
                .await?;
            self.record(SecurityEventKind::MfaFailed, org, Some(user), "wrong code")
                .await?;
            if locked_now {
                self.record(
                    SecurityEventKind::AccountLocked,
                    org,
                    Some(user),
                    "too many failures",
                )
                .await?;
            }
            return Err(AuthError::InvalidCredentials);
        }
        self.record(
            SecurityEventKind::MfaSucceeded,
            org,
            Some(user),
            "second factor",
        )
        .await?;
        if account.login != LoginState::default() {
            self.accounts
                .record_login(&ctx, user, LoginState::after_success(), false)
                .await?;
        }
        self.start(&ctx, &account, &["pwd", "mfa"], now).await
    }

    async fn second_factor(
        &self,
        ctx: &TenantContext,
        user: UserId,
        state: &mfa::TotpState,
        code: &SecretString,
        now: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let raw = code.expose_secret().trim();
        if raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()) {
            let seed = self.open_seed(ctx, user, state).await?;
            let now_unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
            return match mfa::check_code(&seed, raw, now_unix) {
                Some(step) => self.accounts.claim_totp_step(ctx, user, step).await,
                None => Ok(false),
            };
        }
        if raw.len() > 32 {
            return Ok(false);
        }
        self.accounts
            .use_recovery_code(ctx, user, mfa::recovery_hash(code), now)
            .await
    }

    async fn open_seed(
        &self,
        ctx: &TenantContext,
        user: UserId,
        state: &mfa::TotpState,
    ) -> Result<Vec<u8>, AuthError> {
        // Fail closed: an unreadable seed is an outage, not a pass.
        self.sealer
            .open(&mfa::seed_context(ctx, user), &state.sealed_seed)
            .await
            .map_err(|_| AuthError::Unavailable)
    }

    /// The local account behind a principal from a Carapace access token.
    async fn own_account(
        &self,
        principal: &Principal,
    ) -> Result<(TenantContext, Account), AuthError> {
        let user = uuid::Uuid::try_parse(principal.subject().as_str())
            .map(UserId::from_uuid)
            .map_err(|_| AuthError::Forbidden)?;
        let ctx = principal.tenant();
        let account = self
            .accounts
            .find_by_id(&ctx, user)
            .await?
            .filter(|a| a.active)
            .ok_or(AuthError::Forbidden)?;
        Ok((ctx, account))
    }

    /// Starts TOTP enrolment for the caller's own local account: a new seed,
    /// stored sealed and pending until [`Self::activate_totp`].
    pub async fn enroll_totp(&self, principal: &Principal) -> Result<TotpEnrolment, AuthError> {
        let (ctx, account) = self.own_account(principal).await?;
        if account.mfa_enabled {
            return Err(AuthError::MfaAlreadyEnabled);
        }
        let seed = mfa::new_seed();
        let sealed = self
            .sealer
            .seal(&mfa::seed_context(&ctx, account.id), &seed)
            .await
            .map_err(|_| AuthError::Unavailable)?;
        if !self
            .accounts
            .set_pending_totp(&ctx, account.id, sealed)
            .await?
        {
            return Err(AuthError::MfaAlreadyEnabled);
        }
        self.record(
            SecurityEventKind::MfaEnrollmentStarted,
            ctx.org(),
            Some(account.id),
            "totp",
        )
        .await?;
        Ok(TotpEnrolment {
            otpauth_uri: mfa::otpauth_uri(&seed, account.email.as_str())?,
        })
    }

    /// Activates a pending enrolment with a current code; returns the
    /// recovery codes (shown once, stored hashed).
    pub async fn activate_totp(
        &self,
        principal: &Principal,
        code: &SecretString,
        now: OffsetDateTime,
    ) -> Result<Vec<SecretString>, AuthError> {
        let (ctx, account) = self.own_account(principal).await?;
        let state = match self.accounts.totp_state(&ctx, account.id).await? {
            Some(s) if s.enabled => return Err(AuthError::MfaAlreadyEnabled),
            Some(s) => s,
            None => return Err(AuthError::InvalidCredentials),
        };
        let seed = self.open_seed(&ctx, account.id, &state).await?;
        let now_unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let step = mfa::check_code(&seed, code.expose_secret().trim(), now_unix)
            .ok_or(AuthError::InvalidCredentials)?;
        let codes = mfa::new_recovery_codes();
        let hashes = codes.iter().map(mfa::recovery_hash).collect();
        if !self
            .accounts
            .enable_totp(&ctx, account.id, step, hashes)
            .await?
        {
            return Err(AuthError::MfaAlreadyEnabled);
        }
        self.record(
            SecurityEventKind::MfaEnabled,
            ctx.org(),
            Some(account.id),
            "totp",
        )
        .await?;
        Ok(codes)
    }

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

    async fn start(
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
            Rotation::Rotated {
                session,
                account,
                amr,
            } => self.issue(&account, session, next, amr, now),
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
