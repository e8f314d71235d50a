//! Carapace's own access tokens: EdDSA (Ed25519) JWTs, 15 minutes, `kid`
//! in the header, public keys published as a JWKS. Previous keys keep
//! verifying after a rotation, so nobody is logged out by it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carapace_auth::backend::{ACCESS_TOKEN_SECS, BackendGrant, BackendTokenIssuer};
use carapace_auth::local::{AccessClaims, AccessTokenIssuer, Challenge, SessionId, UserId};
use carapace_auth::service_keys::ServiceKeyId;
use carapace_auth::smart::Scopes;
use carapace_auth::{AuthError, Principal, Role, RoleSet};
use carapace_tenancy::{OrgId, SubjectId};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// `iss` and `aud` of Carapace access tokens.
pub const ISSUER: &str = "carapace";
/// Header `typ` of access tokens (RFC 9068); other token kinds differ.
pub const ACCESS_TYP: &str = "at+jwt";
/// Lifetime of an access token.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Header `typ` of SMART Backend Services access tokens.
pub const BACKEND_TYP: &str = "backend-at+jwt";
/// Header `typ` of MFA challenges.
pub const CHALLENGE_TYP: &str = "mfa-challenge+jwt";
/// Lifetime of an MFA challenge.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Serialize, Deserialize)]
struct ChallengeClaims {
    iss: String,
    aud: String,
    sub: Uuid,
    org_id: Uuid,
    token_use: String,
    jti: Uuid,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Why signing keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    /// Not a PKCS#8 Ed25519 private key in PEM.
    #[error(
        "not a PKCS#8 Ed25519 private key (generate one with `openssl genpkey -algorithm ed25519`)"
    )]
    Format,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    org_id: Uuid,
    roles: Vec<String>,
    sid: Uuid,
    amr: Vec<String>,
    token_use: String,
    jti: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<Act>,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// A backend client's access token: its key, roles and scopes, no session.
#[derive(Serialize, Deserialize)]
struct BackendClaims {
    iss: String,
    aud: String,
    sub: String,
    org_id: Uuid,
    key_id: Uuid,
    roles: Vec<String>,
    scope: String,
    token_use: String,
    jti: Uuid,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// RFC 8693 actor claim.
#[derive(Serialize, Deserialize)]
struct Act {
    sub: String,
}

struct Inner {
    kid: String,
    encoding: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: Value,
}

/// Signs and verifies Carapace access tokens. Cheap to clone.
#[derive(Clone)]
pub struct LocalTokens(Arc<Inner>);

impl std::fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTokens")
            .field("kid", &self.0.kid)
            .finish_non_exhaustive()
    }
}

fn parse(pem: &SecretString) -> Result<(String, SigningKey), SigningKeyError> {
    let key =
        SigningKey::from_pkcs8_pem(pem.expose_secret()).map_err(|_| SigningKeyError::Format)?;
    let public = key.verifying_key().to_bytes();
    let digest = Sha256::digest(public);
    let kid = format!(
        "cpk-{}",
        digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Ok((kid, key))
}

impl LocalTokens {
    /// Signs with `current`; verifies with it and every key in `previous`.
    pub fn new(current: &SecretString, previous: &[SecretString]) -> Result<Self, SigningKeyError> {
        crate::jwt_crypto::install();
        let (kid, key) = parse(current)?;
        let encoding = EncodingKey::from_ed_pem(current.expose_secret().as_bytes())
            .map_err(|_| SigningKeyError::Format)?;
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        for entry in std::iter::once(Ok((kid.clone(), key))).chain(previous.iter().map(parse)) {
            let (k, sk) = entry?;
            let x = URL_SAFE_NO_PAD.encode(sk.verifying_key().to_bytes());
            let decoding =
                DecodingKey::from_ed_components(&x).map_err(|_| SigningKeyError::Format)?;
            jwks.push(json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k, "x": x}));
            verifying.insert(k, decoding);
        }
        Ok(Self(Arc::new(Inner {
            kid,
            encoding,
            verifying,
            jwks: json!({ "keys": jwks }),
        })))
    }

    /// A new random signing key as PKCS#8 PEM (for dev set-ups).
    pub fn generate_pem() -> Result<SecretString, SigningKeyError> {
        let key = SigningKey::from_bytes(&rand::random());
        key.to_pkcs8_pem(LineEnding::LF)
            .map(|pem| SecretString::from(pem.to_string()))
            .map_err(|_| SigningKeyError::Format)
    }

    /// The public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &Value {
        &self.0.jwks
    }

    /// The current signing key's id.
    pub fn kid(&self) -> &str {
        &self.0.kid
    }

    /// Checks kind (`typ`), key and registered claims, and decodes.
    fn decode_kind<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
    ) -> Result<C, AuthError> {
        let header =
            decode_header(token).map_err(|_| AuthError::InvalidToken("malformed token"))?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(typ) {
            return Err(AuthError::InvalidToken("wrong kind of Carapace token"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.0.verifying.get(kid))
            .ok_or(AuthError::InvalidToken("unknown kid"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        decode::<C>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|_| AuthError::InvalidToken("signature or registered claims rejected"))
    }

    fn sign<C: Serialize>(&self, typ: &str, claims: &C) -> Result<SecretString, AuthError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.into());
        header.kid = Some(self.0.kid.clone());
        encode(&header, claims, &self.0.encoding)
            .map(SecretString::from)
            .map_err(|_| AuthError::InvalidToken("signing failed"))
    }

    /// Verifies a Carapace access token completely (signature and claims;
    /// the session's liveness is the caller's to check, see
    /// [`Self::verify_with_session`]).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_with_session(token).map(|(p, _)| p)
    }

    /// Like [`Self::verify`], also returning the token's session.
    pub fn verify_with_session(&self, token: &str) -> Result<(Principal, SessionId), AuthError> {
        let c: Claims = self.decode_kind(token, ACCESS_TYP)?;
        if c.token_use != "access" || c.roles.len() > RoleSet::MAX_CLAIMED {
            return Err(AuthError::InvalidToken("not an access token"));
        }
        let subject = SubjectId::parse(&c.sub).map_err(|_| AuthError::InvalidToken("bad sub"))?;
        let roles: Vec<Role> = c.roles.iter().filter_map(|r| r.parse().ok()).collect();
        let mfa = c.amr.iter().any(|m| m == "mfa" || m == "otp");
        // Fail closed: an `act` we cannot read is not silently dropped.
        let actor = match &c.act {
            None => None,
            Some(a) => {
                Some(SubjectId::parse(&a.sub).map_err(|_| AuthError::InvalidToken("bad act"))?)
            }
        };
        Ok((
            Principal::new(subject, OrgId::from_uuid(c.org_id), RoleSet::of(&roles))
                .with_mfa(mfa)
                .with_actor(actor)
                .with_session(SessionId::from_uuid(c.sid)),
            SessionId::from_uuid(c.sid),
        ))
    }
}

impl LocalTokens {
    /// Verifies a backend client's access token: the principal (subject
    /// `service:<key>`, the key's roles, the granted scopes) and its key
    /// (whose revocation the caller checks).
    pub fn verify_backend(&self, token: &str) -> Result<(Principal, ServiceKeyId), AuthError> {
        let c: BackendClaims = self.decode_kind(token, BACKEND_TYP)?;
        if c.token_use != "backend" || c.roles.len() > RoleSet::MAX_CLAIMED {
            return Err(AuthError::InvalidToken("not a backend token"));
        }
        let key = ServiceKeyId::from_uuid(c.key_id);
        if c.sub != format!("service:{key}") {
            return Err(AuthError::InvalidToken("bad sub"));
        }
        let subject = SubjectId::parse(&c.sub).map_err(|_| AuthError::InvalidToken("bad sub"))?;
        let roles: Vec<Role> = c.roles.iter().filter_map(|r| r.parse().ok()).collect();
        let scopes = Scopes::from_claim(&c.scope)
            .filter(Scopes::is_restricted)
            .ok_or(AuthError::InvalidToken(
                "a backend token carries system/ scopes",
            ))?;
        Ok((
            Principal::new(subject, OrgId::from_uuid(c.org_id), RoleSet::of(&roles))
                .with_scopes(scopes),
            key,
        ))
    }
}

impl BackendTokenIssuer for LocalTokens {
    fn issue_backend(
        &self,
        grant: &BackendGrant,
        now: OffsetDateTime,
    ) -> Result<SecretString, AuthError> {
        let now = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let claims = BackendClaims {
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            sub: format!("service:{}", grant.key),
            org_id: grant.org.as_uuid(),
            key_id: grant.key.as_uuid(),
            roles: grant.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            scope: grant.scopes.to_claim().unwrap_or_default(),
            token_use: "backend".into(),
            jti: Uuid::new_v4(),
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_SECS,
        };
        self.sign(BACKEND_TYP, &claims)
    }
}

impl AccessTokenIssuer for LocalTokens {
    fn issue(
        &self,
        claims: &AccessClaims,
        now: OffsetDateTime,
    ) -> Result<(SecretString, u64), AuthError> {
        let now = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let ttl = ACCESS_TTL.as_secs();
        let body = Claims {
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            sub: claims.user.to_string(),
            org_id: claims.org.as_uuid(),
            roles: claims.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            sid: claims.session.as_uuid(),
            amr: claims.amr.clone(),
            token_use: "access".into(),
            jti: Uuid::new_v4(),
            act: claims.act.clone().map(|sub| Act { sub }),
            iat: now,
            nbf: now,
            exp: now + ttl,
        };
        self.sign(ACCESS_TYP, &body).map(|t| (t, ttl))
    }

    fn issue_challenge(
        &self,
        org: OrgId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<(SecretString, u64), AuthError> {
        let now = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let ttl = CHALLENGE_TTL.as_secs();
        let claims = ChallengeClaims {
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            sub: user.as_uuid(),
            org_id: org.as_uuid(),
            token_use: "mfa_challenge".into(),
            jti: Uuid::new_v4(),
            iat: now,
            nbf: now,
            exp: now + ttl,
        };
        self.sign(CHALLENGE_TYP, &claims).map(|t| (t, ttl))
    }

    fn verify_challenge(&self, token: &SecretString) -> Result<Challenge, AuthError> {
        let c: ChallengeClaims = self.decode_kind(token.expose_secret(), CHALLENGE_TYP)?;
        if c.token_use != "mfa_challenge" {
            return Err(AuthError::InvalidToken("not an MFA challenge"));
        }
        let expires_at = i64::try_from(c.exp)
            .ok()
            .and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok())
            .ok_or(AuthError::InvalidToken("bad exp"))?;
        Ok(Challenge {
            org: OrgId::from_uuid(c.org_id),
            user: UserId::from_uuid(c.sub),
            id: c.jti,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(org: OrgId) -> AccessClaims {
        AccessClaims {
            user: UserId::generate(),
            org,
            roles: RoleSet::of(&[Role::Clinician]),
            session: SessionId::generate(),
            amr: vec!["pwd".into()],
            act: None,
        }
    }

    fn pem() -> SecretString {
        LocalTokens::generate_pem().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn issued_tokens_verify_and_survive_rotation() {
        let (old_pem, new_pem) = (pem(), pem());
        let old = LocalTokens::new(&old_pem, &[]).unwrap_or_else(|e| panic!("{e}"));
        let org = OrgId::generate();
        let (token, ttl) = old
            .issue(&claims(org), OffsetDateTime::now_utc())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ttl, 900);
        let p = old
            .verify(token.expose_secret())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.org(), org);
        assert!(p.roles().contains(Role::Clinician));

        let rotated = LocalTokens::new(&new_pem, &[old_pem]).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(rotated.kid(), old.kid());
        assert!(
            rotated.verify(token.expose_secret()).is_ok(),
            "old tokens still verify"
        );
        assert_eq!(rotated.jwks()["keys"].as_array().map(Vec::len), Some(2));
        let fresh = LocalTokens::new(&pem(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(fresh.verify(token.expose_secret()).is_err(), "unknown key");
    }

    #[test]
    fn expired_and_wrong_kind_tokens_are_refused() {
        let t = LocalTokens::new(&pem(), &[]).unwrap_or_else(|e| panic!("{e}"));
        let long_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let (old, _) = t
            .issue(&claims(OrgId::generate()), long_ago)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.verify(old.expose_secret()).is_err());
        let (good, _) = t
            .issue(&claims(OrgId::generate()), OffsetDateTime::now_utc())
            .unwrap_or_else(|e| panic!("{e}"));
        // Same payload and signature, different typ: refused.
        let parts: Vec<&str> = good.expose_secret().split('.').collect();
        let header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#,
            t.kid()
        ));
        assert!(
            t.verify(&format!("{header}.{}.{}", parts[1], parts[2]))
                .is_err()
        );
        assert!(LocalTokens::new(&SecretString::from("not a key".to_owned()), &[]).is_err());
        // An MFA challenge is never an access token, nor the reverse.
        let (challenge, _) = t
            .issue_challenge(
                OrgId::generate(),
                UserId::generate(),
                OffsetDateTime::now_utc(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.verify(challenge.expose_secret()).is_err());
        assert!(t.verify_challenge(&challenge).is_ok());
        assert!(t.verify_challenge(&good).is_err());
    }
}
