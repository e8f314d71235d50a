//! The login, refresh and logout use cases, composed from the ports and
//! the pure policies. Every failure of a login looks the same to the caller.

use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use std::sync::Arc;

use std::net::IpAddr;

use carapace_audit::{SecurityEvent, SecurityEventKind, SecurityEventSink};
use carapace_phi_crypto::{LocalSealer, SecretSealer};
use sha2::{Digest as _, Sha256};
use time::Duration;

use super::mfa::{self, MfaStore};
use super::{
    AccessClaims, AccessTokenIssuer, Account, AccountStore, AddressThrottle, Email, FailureEffect,
    LoginState, Refusal, Rotation, SessionId, SessionLimits, SessionStore, UserId, address_hash,
    client_hash, verify_password,
};
use crate::{AuthError, Principal};

const REFRESH_PREFIX: &str = "crt_";

/// An opaque refresh token (`crt_…`, see `crate::opaque`).
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

    /// `successor` sealed (AES-256-GCM) under a key derived from the
    /// `presented` token alone: the stored ciphertext opens only for a
    /// client that holds the spent token, never from the database (which
    /// keeps the token's plain SHA-256, a different derivation).
    pub fn seal_successor(
        presented: &SecretString,
        successor: &SecretString,
    ) -> Result<Vec<u8>, AuthError> {
        successor_sealer(presented)
            .seal_now(SUCCESSOR_CONTEXT, successor.expose_secret().as_bytes())
            .map_err(|_| AuthError::Unavailable)
    }

    /// Opens what [`Self::seal_successor`] sealed for `presented`.
    pub fn open_successor(
        presented: &SecretString,
        sealed: &[u8],
    ) -> Result<SecretString, AuthError> {
        let bytes = successor_sealer(presented)
            .open_now(SUCCESSOR_CONTEXT, sealed)
            .map_err(|_| AuthError::InvalidToken("refresh token reused; session revoked"))?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| AuthError::InvalidToken("refresh token reused; session revoked"))
    }
}

const SUCCESSOR_CONTEXT: &[u8] = b"carapace refresh successor v1";

fn successor_sealer(presented: &SecretString) -> LocalSealer {
    let mut h = Sha256::new();
    h.update(b"carapace-refresh-successor-key\0");
    h.update(presented.expose_secret().as_bytes());
    LocalSealer::new(&h.finalize().into())
}

/// The security-event detail of a refused attempt.
fn refusal_detail(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::AdminLocked => "account locked by an administrator",
        Refusal::Suspended => "account suspended after 100 failures",
        Refusal::Throttled => "throttled: too many recent failures",
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
            FailureEffect::Throttled if before.failed + 1 == super::FREE_FAILURES => {
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

    /// The local account behind a principal from a Carapace access token,
    /// for a change of its own credentials. An impersonated session may
    /// change no credential (the change would outlive the impersonation,
    /// and the administrator would hold the target's factor): refused,
    /// and the refusal recorded naming both identities.
    async fn own_account(
        &self,
        principal: &Principal,
        what: &str,
    ) -> Result<(TenantContext, Account), AuthError> {
        if !crate::policy::may_change_own_credentials(principal) {
            let mut event = SecurityEvent::new(
                SecurityEventKind::AuthorizationDenied,
                principal.org(),
                principal.subject().clone(),
                format!("{what}: credentials cannot change while impersonating"),
            )
            .acted_by(principal.actor().cloned());
            event.resource_id = Some(principal.subject().as_str().to_owned());
            self.events
                .emit(event)
                .await
                .map_err(|_| AuthError::Unavailable)?;
            return Err(AuthError::Forbidden);
        }
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
    /// stored sealed and pending until [`Self::activate_totp`]. Refused to
    /// an impersonated session.
    pub async fn enroll_totp(&self, principal: &Principal) -> Result<TotpEnrolment, AuthError> {
        let (ctx, account) = self.own_account(principal, "totp enrolment").await?;
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
    /// recovery codes (shown once, stored hashed). Every other session of
    /// the account ends. Refused to an impersonated session.
    pub async fn activate_totp(
        &self,
        principal: &Principal,
        code: &SecretString,
        now: OffsetDateTime,
    ) -> Result<Vec<SecretString>, AuthError> {
        let (ctx, account) = self.own_account(principal, "totp activation").await?;
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
        // The other sessions end with the change (access tokens included:
        // each request checks its session); the caller's own stays.
        if !self
            .accounts
            .enable_totp(&ctx, account.id, step, hashes, principal.session())
            .await?
        {
            return Err(AuthError::MfaAlreadyEnabled);
        }
        self.record(
            SecurityEventKind::MfaEnabled,
            ctx.org(),
            Some(account.id),
            "totp; the account's other sessions ended",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_their_org_and_hash_consistently() {
        let org = OrgId::generate();
        let (token, hash) = RefreshToken::generate(org);
        assert!(token.expose_secret().starts_with("crt_"));
        assert_eq!(RefreshToken::parse(&token), Some((org, hash)));
        let (next, _) = RefreshToken::generate(org);
        let sealed = RefreshToken::seal_successor(&token, &next).unwrap_or_default();
        assert_eq!(
            RefreshToken::open_successor(&token, &sealed)
                .map(|s| s.expose_secret().to_owned())
                .ok(),
            Some(next.expose_secret().to_owned())
        );
        assert!(
            RefreshToken::open_successor(&next, &sealed).is_err(),
            "only the spent token opens its successor"
        );
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
