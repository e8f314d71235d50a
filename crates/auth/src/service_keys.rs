//! Service accounts: API keys for bots and other services. A key is
//! `cak_<org id>.<256 random bits>` (base64url), shown once, stored only as
//! its SHA-256, bound to one organization and a set of roles, revocable,
//! with its last use recorded.

use std::future::Future;

use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use secrecy::SecretString;
use time::OffsetDateTime;

carapace_tenancy::entity_id! {
    /// A service key's id.
    pub struct ServiceKeyId;
}

use crate::{AuthError, Principal, Role, RoleSet};

const PREFIX: &str = "cak_";
/// Longest key name.
pub const NAME_MAX: usize = 100;

/// Roles a service key may carry: never administration or compliance.
pub const ALLOWED_ROLES: [Role; 4] = [Role::Service, Role::Viewer, Role::Staff, Role::Clinician];

/// A service key as stored (no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceKeyInfo {
    /// Its id.
    pub id: ServiceKeyId,
    /// A label for people.
    pub name: String,
    /// What it may do.
    pub roles: RoleSet,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// When it last authenticated a request.
    pub last_used_at: Option<OffsetDateTime>,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// The public JWKS of a SMART backend client (its assertions are
    /// verified against it), if it is one ([`crate::backend`]).
    pub jwks: Option<String>,
}

/// Storage of service keys.
pub trait ServiceKeyStore: Send + Sync {
    /// Stores a new key's hash.
    fn create(
        &self,
        ctx: &TenantContext,
        name: &str,
        roles: RoleSet,
        hash: [u8; 32],
        jwks: Option<&str>,
    ) -> impl Future<Output = Result<ServiceKeyInfo, AuthError>> + Send;

    /// All keys of the organization.
    fn list(
        &self,
        ctx: &TenantContext,
    ) -> impl Future<Output = Result<Vec<ServiceKeyInfo>, AuthError>> + Send;

    /// Revokes a key; `false` if there is no such (unrevoked) key.
    fn revoke(
        &self,
        ctx: &TenantContext,
        id: ServiceKeyId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// The unrevoked key `id`, if there is one.
    fn active(
        &self,
        ctx: &TenantContext,
        id: ServiceKeyId,
    ) -> impl Future<Output = Result<Option<ServiceKeyInfo>, AuthError>> + Send;

    /// Remembers assertion `jti` of key `id` until `expires_at`; `false`
    /// when it was already used (a replay).
    fn use_assertion(
        &self,
        ctx: &TenantContext,
        id: ServiceKeyId,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// The unrevoked key with this hash, recording its use at `now`.
    fn authenticate(
        &self,
        ctx: &TenantContext,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<ServiceKeyInfo>, AuthError>> + Send;
}

/// A new key for `org`, and the hash to store.
pub fn generate(org: OrgId) -> (SecretString, [u8; 32]) {
    crate::opaque::generate(PREFIX, org)
}

/// Whether a bearer credential looks like a service key.
pub fn is_service_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The org and hash of a presented key, if it has the right shape.
pub fn parse(presented: &SecretString) -> Option<(OrgId, [u8; 32])> {
    crate::opaque::parse(PREFIX, presented)
}

/// Checks a new key's name and roles.
pub fn check_new_key(name: &str, roles: &[Role]) -> Result<(), AuthError> {
    let name_ok = !name.trim().is_empty()
        && name.chars().count() <= NAME_MAX
        && !name.chars().any(char::is_control);
    if !name_ok {
        return Err(AuthError::InvalidRequest("name must be 1-100 characters"));
    }
    if roles.is_empty() || roles.iter().any(|r| !ALLOWED_ROLES.contains(r)) {
        return Err(AuthError::InvalidRequest(
            "roles must be some of service, viewer, staff, clinician",
        ));
    }
    Ok(())
}

/// Verifies a presented key against the store.
pub async fn verify(
    store: &impl ServiceKeyStore,
    presented: &SecretString,
    now: OffsetDateTime,
) -> Result<Principal, AuthError> {
    let (org, hash) = parse(presented).ok_or(AuthError::InvalidToken("malformed service key"))?;
    let actor =
        SubjectId::parse("system:service-key").map_err(|_| AuthError::InvalidToken("subject"))?;
    let ctx = TenantContext::new(org, actor);
    let key = store
        .authenticate(&ctx, hash, now)
        .await?
        .ok_or(AuthError::InvalidToken("unknown or revoked service key"))?;
    let subject = SubjectId::parse(&format!("service:{}", key.id))
        .map_err(|_| AuthError::InvalidToken("subject"))?;
    Ok(Principal::new(subject, org, key.roles))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn keys_have_their_own_shape() {
        let org = OrgId::generate();
        let (key, hash) = generate(org);
        assert!(is_service_key(key.expose_secret()));
        assert_eq!(parse(&key), Some((org, hash)));
        assert_eq!(crate::local::RefreshToken::parse(&key), None);
        assert_eq!(crate::local::ResetToken::parse(&key), None);
        assert_eq!(parse(&SecretString::from("cak_nope".to_owned())), None);
    }

    #[test]
    fn new_keys_get_least_privilege() {
        assert!(check_new_key("voice bot", &[Role::Service, Role::Viewer]).is_ok());
        assert!(check_new_key("voice bot", &[Role::Admin]).is_err());
        assert!(check_new_key("voice bot", &[Role::Compliance]).is_err());
        assert!(check_new_key("voice bot", &[]).is_err());
        assert!(check_new_key("", &[Role::Service]).is_err());
        assert!(check_new_key(&"n".repeat(101), &[Role::Service]).is_err());
    }
}
