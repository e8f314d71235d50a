//! Password login and its second factor: address and account throttling,
//! lockout, and the events each step records.

use std::net::IpAddr;

use carapace_audit::SecurityEventKind;
use carapace_tenancy::{OrgId, TenantContext};
use secrecy::{ExposeSecret as _, SecretString};
use time::{Duration, OffsetDateTime};

use super::super::mfa::{self, MfaStore};
use super::super::{
    AccessTokenIssuer, AccountStore, AddressThrottle, Email, FailureEffect, LoginState, Refusal,
    SessionStore, UserId, address_hash, client_hash, verify_password,
};
use super::{IssuedTokens, LocalAuth, LoginOutcome, system};
use crate::AuthError;

/// The security-event detail of a refused attempt.
fn refusal_detail(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::AdminLocked => "account locked by an administrator",
        Refusal::Suspended => "account suspended after 100 failures",
        Refusal::Throttled => "throttled: too many recent failures",
    }
}

/// How long a client address stays the account's "usual situation" after
/// a successful sign-in from it.
pub const KNOWN_ADDRESS_FOR: Duration = Duration::days(90);

impl<A, S, T> LocalAuth<A, S, T>
where
    A: AccountStore + MfaStore + AddressThrottle,
    S: SessionStore,
    T: AccessTokenIssuer,
{
    /// Password login from `client` (the request's address, when known).
    /// Unknown user, wrong password, throttled, locked or inactive
    /// account: all [`AuthError::InvalidCredentials`], after the same
    /// amount of hashing work. An address with too many recent failures
    /// (across accounts) gets [`AuthError::TooManyAttempts`].
    pub async fn login(
        &self,
        org: OrgId,
        email: &str,
        password: &SecretString,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, AuthError> {
        self.address_gate(client, now).await?;
        let real_org = org.as_uuid() != uuid::Uuid::nil();
        let ctx = system(org, "system:login");
        let account = match Email::parse(email) {
            Some(email) => self.accounts.find_by_email(&ctx, &email).await?,
            None => None,
        };
        let Some(account) = account.filter(|a| a.active) else {
            verify_password(password, None);
            self.address_failed(client, now).await?;
            if real_org {
                self.record(
                    SecurityEventKind::LoginFailed,
                    org,
                    None,
                    "unknown or inactive account",
                )
                .await?;
            }
            return Err(AuthError::InvalidCredentials);
        };
        let known = self.known(&ctx, account.id, client, now).await?;
        let (before, after, effect) = match self.claim_attempt(&ctx, account.id, known, now).await?
        {
            Ok(claimed) => claimed,
            Err(refusal) => {
                verify_password(password, None);
                self.address_failed(client, now).await?;
                self.record(
                    SecurityEventKind::LoginFailed,
                    org,
                    Some(account.id),
                    refusal_detail(refusal),
                )
                .await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        if !verify_password(password, account.password_hash.as_deref()) {
            self.address_failed(client, now).await?;
            self.record(
                SecurityEventKind::LoginFailed,
                org,
                Some(account.id),
                "wrong password",
            )
            .await?;
            self.record_effect(org, account.id, before, effect).await?;
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
            // The password step does not count as a failure, but the
            // failures so far stand until the second factor succeeds.
            self.accounts
                .swap_login_state(&ctx, account.id, after, before)
                .await?;
            let (challenge, expires_in) = self.tokens.issue_challenge(org, account.id, now)?;
            return Ok(LoginOutcome::MfaRequired {
                challenge,
                expires_in,
            });
        }
        self.succeeded(&ctx, account.id, after, client, now).await?;
        self.start(&ctx, &account, &["pwd"], now)
            .await
            .map(LoginOutcome::Tokens)
    }

    /// Completes a login with a TOTP code or a recovery code from
    /// `client`. Wrong codes count like wrong passwords (throttling); a
    /// code is accepted once, and so is a challenge.
    pub async fn verify_mfa(
        &self,
        challenge: &SecretString,
        code: &SecretString,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, AuthError> {
        self.address_gate(client, now).await?;
        let challenge = self.tokens.verify_challenge(challenge)?;
        let (org, user) = (challenge.org, challenge.user);
        let ctx = system(org, "system:mfa");
        let account = self
            .accounts
            .find_by_id(&ctx, user)
            .await?
            .filter(|a| a.active && a.mfa_enabled)
            .ok_or(AuthError::InvalidCredentials)?;
        let known = self.known(&ctx, user, client, now).await?;
        let (before, after, effect) = match self.claim_attempt(&ctx, user, known, now).await? {
            Ok(claimed) => claimed,
            Err(refusal) => {
                self.record(
                    SecurityEventKind::MfaFailed,
                    org,
                    Some(user),
                    refusal_detail(refusal),
                )
                .await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        let accepted = match self.accounts.totp_state(&ctx, user).await? {
            Some(state) if state.enabled => {
                self.second_factor(&ctx, user, &state, code, now).await?
            }
            _ => false,
        };
        if !accepted {
            self.address_failed(client, now).await?;
            self.record(SecurityEventKind::MfaFailed, org, Some(user), "wrong code")
                .await?;
            self.record_effect(org, user, before, effect).await?;
            return Err(AuthError::InvalidCredentials);
        }
        // One challenge, one session: a second code (a recovery code, say)
        // presented with the same challenge starts nothing.
        if !self
            .accounts
            .spend_challenge(&ctx, challenge.id, challenge.expires_at)
            .await?
        {
            self.record(
                SecurityEventKind::MfaFailed,
                org,
                Some(user),
                "challenge already used",
            )
            .await?;
            return Err(AuthError::InvalidCredentials);
        }
        self.record(
            SecurityEventKind::MfaSucceeded,
            org,
            Some(user),
            "second factor",
        )
        .await?;
        self.succeeded(&ctx, user, after, client, now).await?;
        self.start(&ctx, &account, &["pwd", "mfa"], now).await
    }

    /// Refuses an address with too many recent failures (429).
    async fn address_gate(
        &self,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let Some(ip) = client else {
            return Ok(());
        };
        match self
            .accounts
            .address_state(client_hash(ip))
            .await?
            .wait(now)
        {
            Some(wait) => Err(AuthError::TooManyAttempts(
                std::time::Duration::try_from(wait).unwrap_or_default(),
            )),
            None => Ok(()),
        }
    }

    async fn address_failed(
        &self,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        match client {
            Some(ip) => {
                self.accounts
                    .record_address_failure(client_hash(ip), now)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Whether `client` is where the account signed in before.
    async fn known(
        &self,
        ctx: &TenantContext,
        user: UserId,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        match client {
            Some(ip) => {
                self.accounts
                    .is_known_address(ctx, user, address_hash(user, ip), now - KNOWN_ADDRESS_FOR)
                    .await
            }
            None => Ok(false),
        }
    }

    /// Counts this attempt as a failure before any secret is checked, so
    /// that racing attempts cannot all slip past the throttle: each must
    /// move the failure count itself (compare and set), re-reading and
    /// deciding again when another moved it first. Returns the state
    /// before and after, and what the failure would change; or why the
    /// attempt is refused without a check.
    async fn claim_attempt(
        &self,
        ctx: &TenantContext,
        user: UserId,
        known: bool,
        now: OffsetDateTime,
    ) -> Result<Result<(LoginState, LoginState, FailureEffect), Refusal>, AuthError> {
        for _ in 0..16 {
            let account = self
                .accounts
                .find_by_id(ctx, user)
                .await?
                .filter(|a| a.active)
                .ok_or(AuthError::InvalidCredentials)?;
            if let Some(refusal) = account.login.refusal(now, known) {
                return Ok(Err(refusal));
            }
            let (next, effect) = account.login.after_failure(now);
            if self
                .accounts
                .swap_login_state(ctx, user, account.login, next)
                .await?
            {
                return Ok(Ok((account.login, next, effect)));
            }
        }
        // Contended beyond reason (a swarm of attempts at once): refuse
        // rather than skip the count, and say so (429), not "wrong password".
        Err(AuthError::TooManyAttempts(std::time::Duration::from_secs(
            1,
        )))
    }

    /// Records what a failure changed (throttling began, or suspension).
    async fn record_effect(
        &self,
        org: OrgId,
        user: UserId,
        before: LoginState,
        effect: FailureEffect,
    ) -> Result<(), AuthError> {
        let detail = match effect {
            FailureEffect::Counted => return Ok(()),
            FailureEffect::Throttled if before.failed + 1 == super::super::FREE_FAILURES => {
                "throttled: consecutive failures; attempts from unknown addresses are delayed"
            }
            FailureEffect::Throttled => return Ok(()),
            FailureEffect::Suspended => {
                "suspended: 100 consecutive failures; an administrator must unlock"
            }
        };
        self.record(SecurityEventKind::AccountLocked, org, Some(user), detail)
            .await
    }

    /// A complete sign-in: failures forgotten, the address remembered.
    async fn succeeded(
        &self,
        ctx: &TenantContext,
        user: UserId,
        claimed: LoginState,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        // Whatever raced meanwhile, this success ends the failure streak.
        let mut expected = claimed;
        for _ in 0..16 {
            if self
                .accounts
                .swap_login_state(ctx, user, expected, expected.after_success())
                .await?
            {
                break;
            }
            match self.accounts.find_by_id(ctx, user).await? {
                Some(a) => expected = a.login,
                None => return Err(AuthError::InvalidCredentials),
            }
        }
        if let Some(ip) = client {
            self.accounts
                .remember_address(ctx, user, address_hash(user, ip), now)
                .await?;
        }
        Ok(())
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
}
