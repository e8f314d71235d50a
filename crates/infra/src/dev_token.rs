//! Interim development tokens: HS256 JWTs signed with a shared secret of at
//! least 32 bytes. Only the `dev` profile turns them on; production refuses
//! to start with them. Real identity (OIDC, local accounts) replaces them
//! behind the same [`TokenVerifier`] port.

use std::time::Duration;

use carapace_auth::{AuthError, Principal, Role, RoleSet, TokenVerifier};
use carapace_tenancy::{OrgId, SubjectId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Issuer and audience of dev tokens.
pub const DEV_ISSUER: &str = "carapace-dev";
/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest bearer token looked at, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why dev tokens could not be set up or minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevTokenError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("dev token secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    /// Signing failed.
    #[error("could not sign the token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    org_id: Uuid,
    roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    amr: Vec<String>,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Mints and verifies dev tokens.
pub struct DevTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for DevTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevTokens(<secret redacted>)")
    }
}

impl DevTokens {
    /// Dev tokens signed with `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &SecretString) -> Result<Self, DevTokenError> {
        crate::jwt_crypto::install();
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(DevTokenError::SecretTooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[DEV_ISSUER]);
        validation.set_audience(&[DEV_ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        })
    }

    /// A token for `subject` in `org` with `roles`, valid for `ttl` from
    /// `now_unix` (seconds since the epoch).
    pub fn mint(
        &self,
        org: OrgId,
        subject: &SubjectId,
        roles: &[Role],
        now_unix: u64,
        ttl: Duration,
    ) -> Result<SecretString, DevTokenError> {
        self.mint_session(org, subject, roles, false, now_unix, ttl)
    }

    /// Like [`Self::mint`]; with `mfa`, the token's `amr` says MFA was done
    /// (for exercising step-up rules in development).
    pub fn mint_session(
        &self,
        org: OrgId,
        subject: &SubjectId,
        roles: &[Role],
        mfa: bool,
        now_unix: u64,
        ttl: Duration,
    ) -> Result<SecretString, DevTokenError> {
        let amr = if mfa {
            vec!["pwd".to_owned(), "mfa".to_owned()]
        } else {
            Vec::new()
        };
        let claims = Claims {
            iss: DEV_ISSUER.into(),
            aud: DEV_ISSUER.into(),
            sub: subject.as_str().into(),
            org_id: org.as_uuid(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            amr,
            iat: now_unix,
            nbf: now_unix,
            exp: now_unix + ttl.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(SecretString::from)
            .map_err(DevTokenError::Signing)
    }

    fn check(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken("token too long"));
        }
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::InvalidToken("signature, algorithm or claims rejected"))?;
        let c = data.claims;
        if c.roles.len() > RoleSet::MAX_CLAIMED {
            return Err(AuthError::InvalidToken("too many roles"));
        }
        let subject =
            SubjectId::parse(&c.sub).map_err(|_| AuthError::InvalidToken("bad subject"))?;
        let roles: Vec<Role> = c.roles.iter().filter_map(|r| r.parse().ok()).collect();
        let mfa = c.amr.iter().any(|m| m == "mfa");
        Ok(Principal::new(subject, OrgId::from_uuid(c.org_id), RoleSet::of(&roles)).with_mfa(mfa))
    }
}

impl TokenVerifier for DevTokens {
    async fn verify(&self, token: &SecretString) -> Result<Principal, AuthError> {
        self.check(token.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn tokens() -> DevTokens {
        DevTokens::new(&secret(&"k".repeat(32))).unwrap_or_else(|e| panic!("{e}"))
    }

    fn subject() -> SubjectId {
        SubjectId::parse("dev-user").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            DevTokens::new(&secret(&"k".repeat(31))),
            Err(DevTokenError::SecretTooShort)
        ));
    }

    #[test]
    fn a_minted_token_verifies_to_its_principal() {
        let t = tokens();
        let org = OrgId::generate();
        let token = t
            .mint(
                org,
                &subject(),
                &[Role::Clinician],
                now(),
                Duration::from_secs(600),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let p = t
            .check(token.expose_secret())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.org(), org);
        assert_eq!(p.subject().as_str(), "dev-user");
        assert!(p.roles().contains(Role::Clinician));
        assert!(!p.roles().contains(Role::Admin));
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_are_refused() {
        let t = tokens();
        let org = OrgId::generate();
        let expired = t
            .mint(
                org,
                &subject(),
                &[Role::Admin],
                now() - 3600,
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.check(expired.expose_secret()).is_err());

        let other = DevTokens::new(&secret(&"x".repeat(32))).unwrap_or_else(|e| panic!("{e}"));
        let foreign = other
            .mint(
                org,
                &subject(),
                &[Role::Admin],
                now(),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.check(foreign.expose_secret()).is_err());

        // alg=none with the same claims.
        let good = t
            .mint(
                org,
                &subject(),
                &[Role::Admin],
                now(),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let parts: Vec<&str> = good.expose_secret().split('.').collect();
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        assert!(t.check(&format!("{none_header}.{}.", parts[1])).is_err());
        assert!(t.check(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }

    #[test]
    fn unknown_roles_grant_nothing() {
        let t = tokens();
        let token = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                iss: DEV_ISSUER.into(),
                aud: DEV_ISSUER.into(),
                sub: "u".into(),
                org_id: Uuid::now_v7(),
                roles: vec!["superuser".into()],
                amr: vec![],
                iat: now(),
                nbf: now(),
                exp: now() + 60,
            },
            &t.encoding,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let p = t.check(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.roles(), RoleSet::default());
    }
}
