//! The login, refresh and logout use cases, composed from the ports and
//! the pure policies. Every failure of a login looks the same to the caller.

mod login;
mod refresh_token;
mod session;
mod totp;

use std::sync::Arc;

use carapace_audit::{SecurityEventKind, SecurityEventSink};
use carapace_phi_crypto::SecretSealer;
use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use secrecy::SecretString;

use super::{SessionId, SessionLimits, UserId};
use crate::AuthError;

pub use refresh_token::RefreshToken;

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
