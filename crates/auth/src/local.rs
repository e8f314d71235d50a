//! Local accounts: password rules and hashing, lockout and session
//! policies, the account and session ports, and the login, refresh and
//! logout use cases built only from those.

pub mod admin;
mod flow;
pub mod mfa;
mod password;
mod policy;
mod ports;
mod reset;

/// Records an authentication event about `account` (or `anonymous`) in
/// `org`; fails closed: [`crate::AuthError::Storage`] when the database is
/// out, else [`crate::AuthError::Unavailable`].
pub(crate) async fn record_event(
    events: &dyn carapace_audit::SecurityEventSink,
    kind: carapace_audit::SecurityEventKind,
    org: carapace_tenancy::OrgId,
    account: Option<UserId>,
    detail: &str,
) -> Result<(), crate::AuthError> {
    let subject = account.map_or_else(|| "anonymous".to_owned(), |a| a.to_string());
    let subject =
        carapace_tenancy::SubjectId::parse(&subject).map_err(|_| crate::AuthError::Unavailable)?;
    let mut event = carapace_audit::SecurityEvent::new(kind, org, subject, detail);
    event.resource_id = account.map(|a| a.to_string());
    events
        .emit(event)
        .await
        .map_err(|e| match e.into_storage() {
            // The database is out: say so (503 storage_unavailable).
            s @ carapace_tenancy::StorageError::Unavailable(_) => crate::AuthError::Storage(s),
            // Any other failure to record still stops the action (503).
            _ => crate::AuthError::Unavailable,
        })
}

pub use flow::{IssuedTokens, LocalAuth, LoginOutcome, RefreshToken, TotpEnrolment};
pub use password::{check_new_password, hash_password, verify_password};
pub use policy::{
    ADDRESS_FREE_FAILURES, ADDRESS_MEMORY, AddressState, FREE_FAILURES, FailureEffect, LoginState,
    MAX_DELAY, MAX_FAILURES, Refusal, SessionLimits, delay_after, session_alive, within_grace,
};
pub use ports::{
    AccessClaims, AccessTokenIssuer, Account, AccountStore, AddressThrottle, Challenge, Email,
    Rotation, SessionId, SessionStore, UserId, address_hash, client_hash,
};
pub use reset::{
    Mailer, OutgoingMail, PasswordReset, RESET_TTL, ResetStore, ResetToken, reset_mail,
    reset_notice,
};
