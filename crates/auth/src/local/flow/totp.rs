//! TOTP enrolment and activation on the caller's own account.

use carapace_audit::SecurityEventKind;
use carapace_tenancy::TenantContext;
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use super::super::mfa::{self, MfaStore};
use super::super::{
    AccessTokenIssuer, Account, AccountStore, AddressThrottle, SessionStore, UserId,
};
use super::{LocalAuth, TotpEnrolment};
use crate::{AuthError, Principal};

impl<A, S, T> LocalAuth<A, S, T>
where
    A: AccountStore + MfaStore + AddressThrottle,
    S: SessionStore,
    T: AccessTokenIssuer,
{
    pub(super) async fn open_seed(
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
            let mut event = principal.security_event(
                SecurityEventKind::AuthorizationDenied,
                format!("{what}: credentials cannot change while impersonating"),
                &carapace_audit::Origin::default(),
            );
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
}
