//! Types and ports of local accounts and sessions.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use carapace_tenancy::{OrgId, TenantContext};
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;
use validator::ValidateEmail as _;

use super::{AddressState, LoginState, SessionLimits};
use crate::{AuthError, RoleSet};

carapace_tenancy::entity_id! {
    /// A local user's id.
    pub struct UserId;
}

/// The hash under which an account remembers a client address it signed
/// in from (the account's "usual situation"), salted with the account.
pub fn address_hash(user: UserId, address: IpAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"carapace-login-address\0");
    h.update(user.as_uuid().as_bytes());
    h.update(address.to_string().as_bytes());
    h.finalize().into()
}

/// The hash under which failures from a client address are counted
/// across organizations.
pub fn client_hash(address: IpAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"carapace-client-address\0");
    h.update(address.to_string().as_bytes());
    h.finalize().into()
}

carapace_tenancy::entity_id! {
    /// A session (refresh-token family) id.
    pub struct SessionId;
}

/// A login e-mail address: trimmed, lower-cased, at most 254 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses an address; `None` if it is not one.
    pub fn parse(raw: &str) -> Option<Self> {
        let v = raw.trim().to_lowercase();
        (v.len() <= 254 && v.validate_email()).then_some(Self(v))
    }
    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

/// A local account.
#[derive(Clone)]
pub struct Account {
    /// Its id.
    pub id: UserId,
    /// Its organization.
    pub org: OrgId,
    /// Its login address.
    pub email: Email,
    /// Argon2id PHC string; `None` for accounts without a password.
    pub password_hash: Option<String>,
    /// Its roles.
    pub roles: RoleSet,
    /// Deactivated accounts cannot log in or refresh.
    pub active: bool,
    /// Failures, throttling and the administrator's lock.
    pub login: LoginState,
    /// Whether TOTP is enabled (login then needs a second factor).
    pub mfa_enabled: bool,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("roles", &self.roles)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// What rotating a refresh token found.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: it is now used, its successor stored.
    Rotated {
        /// The session.
        session: SessionId,
        /// Its (active) account.
        account: Account,
        /// How the session was authenticated (`pwd`, `mfa`).
        amr: Vec<String>,
    },
    /// The token was spent moments ago (within the grace window) by a
    /// rotation of the same session that is still live: the same successor
    /// is handed out again, sealed under a key only the presented token
    /// derives (two tabs refreshing at once).
    Repeated {
        /// The session.
        session: SessionId,
        /// Its (active) account.
        account: Account,
        /// How the session was authenticated.
        amr: Vec<String>,
        /// The successor token, sealed ([`super::RefreshToken::open_successor`]).
        sealed_successor: Vec<u8>,
    },
    /// The token had already been used: the whole family is now revoked.
    Reused,
    /// No such token, or its session is revoked, expired or its account inactive.
    Invalid,
}

/// Storage of local accounts.
pub trait AccountStore: Send + Sync {
    /// Creates an account; [`AuthError::EmailTaken`] if the address exists in the org.
    fn create(
        &self,
        ctx: &TenantContext,
        email: &Email,
        password_hash: Option<String>,
        roles: RoleSet,
    ) -> impl Future<Output = Result<Account, AuthError>> + Send;

    /// Finds an account by login address.
    fn find_by_email(
        &self,
        ctx: &TenantContext,
        email: &Email,
    ) -> impl Future<Output = Result<Option<Account>, AuthError>> + Send;

    /// Finds an account by id.
    fn find_by_id(
        &self,
        ctx: &TenantContext,
        user: UserId,
    ) -> impl Future<Output = Result<Option<Account>, AuthError>> + Send;

    /// Moves the account's failure count and throttling from `expected`
    /// to `next`, only if nobody else moved them meanwhile (compare and
    /// set on the failure count): `false` means re-read and decide again.
    /// The administrator's lock is never changed here.
    fn swap_login_state(
        &self,
        ctx: &TenantContext,
        user: UserId,
        expected: LoginState,
        next: LoginState,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Whether the account signed in successfully from the client address
    /// hashing to `address` (see [`super::address_hash`]) within `since`.
    fn is_known_address(
        &self,
        ctx: &TenantContext,
        user: UserId,
        address: [u8; 32],
        since: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Remembers a successful sign-in from `address` (a few per account).
    fn remember_address(
        &self,
        ctx: &TenantContext,
        user: UserId,
        address: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;
}

/// Failed sign-ins per client address, across organizations (addresses
/// are hashed; this is not tenant data).
pub trait AddressThrottle: Send + Sync {
    /// The address's state.
    fn address_state(
        &self,
        address: [u8; 32],
    ) -> impl Future<Output = Result<AddressState, AuthError>> + Send;

    /// Records a failure from `address` at `now` (the policy's
    /// [`AddressState::after_failure`]).
    fn record_address_failure(
        &self,
        address: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;
}

/// Storage of sessions and their single-use refresh tokens (hashes only).
pub trait SessionStore: Send + Sync {
    /// Starts a session whose first refresh token hashes to `refresh_hash`.
    fn start(
        &self,
        ctx: &TenantContext,
        user: UserId,
        amr: &[&str],
        refresh_hash: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<SessionId, AuthError>> + Send;

    /// Atomically uses the token hashing to `presented` and stores `next`
    /// (keeping `sealed_next`, the successor sealed for the grace window).
    /// Exactly one of concurrent rotations of one token succeeds; the same
    /// token presented again within `limits.grace` of its use, while its
    /// session lives, is [`Rotation::Repeated`]; any later use revokes the
    /// family and records a security event.
    fn rotate(
        &self,
        ctx: &TenantContext,
        presented: [u8; 32],
        next: [u8; 32],
        sealed_next: Vec<u8>,
        now: OffsetDateTime,
        limits: SessionLimits,
    ) -> impl Future<Output = Result<Rotation, AuthError>> + Send;

    /// Ends every live session of `user` but `keep` (the caller's own,
    /// after a credential change); returns how many ended.
    fn revoke_all(
        &self,
        ctx: &TenantContext,
        user: UserId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, AuthError>> + Send;

    /// Whether the session is still live (not revoked). Checked on every
    /// request made with a Carapace access token.
    fn is_active(
        &self,
        ctx: &TenantContext,
        session: SessionId,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Revokes the session holding the token hashing to `presented`.
    fn revoke_by_token(
        &self,
        ctx: &TenantContext,
        presented: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// What a Carapace access token says.
#[derive(Clone, Debug)]
pub struct AccessClaims {
    /// The user.
    pub user: UserId,
    /// The organization.
    pub org: OrgId,
    /// The roles.
    pub roles: RoleSet,
    /// The session it belongs to.
    pub session: SessionId,
    /// Authentication methods (`pwd`, `mfa`).
    pub amr: Vec<String>,
    /// The impersonating admin (`act.sub`), if any.
    pub act: Option<String>,
}

/// Signs Carapace's own access tokens.
pub trait AccessTokenIssuer: Send + Sync {
    /// A signed token for `claims` issued at `now`, and its lifetime in seconds.
    fn issue(
        &self,
        claims: &AccessClaims,
        now: OffsetDateTime,
    ) -> Result<(SecretString, u64), AuthError>;

    /// A short-lived MFA challenge for `user` (a distinct token kind: never
    /// accepted as an access token), and its lifetime in seconds.
    fn issue_challenge(
        &self,
        org: OrgId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<(SecretString, u64), AuthError>;

    /// The org, user, id and expiry of a valid, unexpired MFA challenge
    /// (that it is unspent is the [`super::mfa::MfaStore`]'s to say).
    fn verify_challenge(&self, token: &SecretString) -> Result<Challenge, AuthError>;
}

/// A verified MFA challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The organization.
    pub org: OrgId,
    /// The user who passed the password step.
    pub user: UserId,
    /// Its unique id (spent once).
    pub id: Uuid,
    /// When it expires.
    pub expires_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_bounded() {
        assert_eq!(
            Email::parse("  Jane.Roe@Example.ORG ").map(|e| e.0),
            Some("jane.roe@example.org".into())
        );
        assert!(Email::parse("not an email").is_none());
        assert!(Email::parse(&format!("{}@example.org", "a".repeat(250))).is_none());
        assert_eq!(
            format!("{:?}", Email::parse("a@b.org")),
            "Some(Email(<redacted>))"
        );
    }
}
