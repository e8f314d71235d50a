//! SMART Backend Services (client credentials with a signed JWT
//! assertion): how a registered service client, a service key that holds a
//! public JWKS, trades an assertion signed by one of its keys for a
//! short-lived access token with `system/` scopes. The rules of the
//! assertion and of the scopes live here, pure; verifying the signature
//! against the registered keys is the adapter's (`carapace_infra`).

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::service_keys::ServiceKeyId;
use crate::smart::Scopes;
use carapace_tenancy::OrgId;

const PREFIX: &str = "cbs_";
/// The `grant_type` of the exchange.
pub const GRANT_TYPE: &str = "client_credentials";
/// The `client_assertion_type` of the exchange.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far in the future an assertion may expire (SMART: five minutes).
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 300;
/// How long an access token lives.
pub const ACCESS_TOKEN_SECS: u64 = 300;
/// Signature algorithms accepted on assertions (SMART asks for RS384 and
/// ES384; their 256-bit siblings are accepted too). Never `none`, never
/// an HMAC: a public key is not a shared secret.
pub const ALGORITHMS: [&str; 4] = ["RS384", "ES384", "RS256", "ES256"];
/// Largest registered JWKS, in bytes, and most keys in it.
pub const JWKS_MAX_BYTES: usize = 16 * 1024;
/// Most keys in a registered JWKS.
pub const JWKS_MAX_KEYS: usize = 8;

/// Why an exchange was refused, as OAuth 2.0 names it (RFC 6749 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Malformed request (missing or repeated parameter, wrong assertion type).
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Unknown client, bad signature or claims, replayed assertion.
    #[error("invalid_client: {0}")]
    InvalidClient(&'static str),
    /// Not `client_credentials`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// Scopes that are not `system/` resource scopes.
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
}

impl OAuthError {
    /// The RFC 6749 error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
        }
    }

    /// What is wrong, in words (no secrets).
    pub fn description(self) -> &'static str {
        match self {
            Self::InvalidRequest(d) | Self::InvalidClient(d) | Self::InvalidScope(d) => d,
            Self::UnsupportedGrantType => "grant_type must be client_credentials",
        }
    }
}

/// A backend client's id: `cbs_<organization>.<service key>`.
pub fn client_id(org: OrgId, key: ServiceKeyId) -> String {
    format!("{PREFIX}{}.{}", org.as_uuid(), key.as_uuid())
}

/// The organization and service key a client id names.
pub fn parse_client_id(id: &str) -> Option<(OrgId, ServiceKeyId)> {
    let rest = id.strip_prefix(PREFIX)?;
    let (org, key) = rest.split_once('.')?;
    let org = Uuid::parse_str(org).ok().filter(|_| org.len() == 36)?;
    let key = Uuid::parse_str(key).ok().filter(|_| key.len() == 36)?;
    Some((OrgId::from_uuid(org), ServiceKeyId::from_uuid(key)))
}

/// Checks the shape of a JWKS a client registers: a JSON object whose
/// `keys` hold 1 to [`JWKS_MAX_KEYS`] public RSA or EC keys, each with a
/// `kid`; no private parts, no symmetric keys.
pub fn check_jwks(jwks: &Value) -> Result<(), &'static str> {
    if jwks.to_string().len() > JWKS_MAX_BYTES {
        return Err("the JWKS is larger than 16 KiB");
    }
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .filter(|k| !k.is_empty() && k.len() <= JWKS_MAX_KEYS)
        .ok_or("a JWKS holds 1 to 8 keys in \"keys\"")?;
    for key in keys {
        let kty = key.get("kty").and_then(Value::as_str);
        if !matches!(kty, Some("RSA" | "EC")) {
            return Err("keys must be RSA or EC public keys");
        }
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|private| key.get(*private).is_some())
        {
            return Err("a registered key must be public: no private parts");
        }
        if !key
            .get("kid")
            .and_then(Value::as_str)
            .is_some_and(|k| !k.is_empty() && k.len() <= 200)
        {
            return Err("every key needs a kid");
        }
    }
    Ok(())
}

/// What a verified assertion says that the server must remember.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionFacts {
    /// Its unique id (refused a second time until it expires).
    pub jti: String,
    /// When it expires (seconds since the epoch).
    pub exp: u64,
}

/// Checks the claims of an assertion whose signature verified against the
/// client's registered keys: issued by and about the client (`iss` = `sub`
/// = `client_id`), for this token endpoint (`aud`), unexpired and
/// expiring within [`MAX_ASSERTION_LIFETIME_SECS`], with a `jti`.
pub fn check_assertion(
    claims: &Map<String, Value>,
    client_id: &str,
    token_url: &str,
    now: u64,
) -> Result<AssertionFacts, OAuthError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(OAuthError::InvalidClient(
            "iss and sub must be the client_id",
        ));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == token_url,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(token_url)),
        _ => false,
    };
    if !audience_ok {
        return Err(OAuthError::InvalidClient("aud must be the token endpoint"));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(OAuthError::InvalidClient("exp is required"))?;
    if exp <= now {
        return Err(OAuthError::InvalidClient("the assertion has expired"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return Err(OAuthError::InvalidClient(
            "exp may be at most five minutes ahead",
        ));
    }
    if claims
        .get("nbf")
        .and_then(Value::as_u64)
        .is_some_and(|nbf| nbf > now + 30)
    {
        return Err(OAuthError::InvalidClient("the assertion is not valid yet"));
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 255)
        .ok_or(OAuthError::InvalidClient(
            "jti is required (1-255 characters)",
        ))?;
    Ok(AssertionFacts {
        jti: jti.to_owned(),
        exp,
    })
}

/// The scopes a backend client asks for: `system/` resource scopes only
/// (the roles of its key still bound them, [`crate::policy::authorize`]).
pub fn requested_scopes(scope: &str) -> Result<Scopes, OAuthError> {
    let words: Vec<&str> = scope.split_ascii_whitespace().collect();
    if words.is_empty() {
        return Err(OAuthError::InvalidScope("ask for system/ scopes"));
    }
    if words.iter().any(|w| !w.starts_with("system/")) {
        return Err(OAuthError::InvalidScope(
            "a backend service asks for system/ scopes only",
        ));
    }
    let scopes = Scopes::from_claim(scope).ok_or(OAuthError::InvalidScope("too many scopes"))?;
    if scopes.to_claim().is_none_or(|c| c.is_empty()) {
        return Err(OAuthError::InvalidScope(
            "no scope here is one Carapace serves",
        ));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://api.example/api/v1/auth/token";

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn client_ids_round_trip_and_refuse_lookalikes() {
        let (org, key) = (OrgId::generate(), ServiceKeyId::from_uuid(Uuid::now_v7()));
        let id = client_id(org, key);
        assert_eq!(parse_client_id(&id), Some((org, key)));
        for bad in [
            "",
            "cbs_",
            "cbs_x.y",
            "cak_a.b",
            &id.replace("cbs_", "CBS_"),
            &format!("{id}.x"),
        ] {
            assert_eq!(parse_client_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn assertions_must_name_the_client_and_this_endpoint_and_expire_soon() {
        let id = "cbs_client";
        let good = json!({"iss": id, "sub": id, "aud": URL, "exp": 1_100, "jti": "a-1"});
        assert_eq!(
            check_assertion(&claims(good.clone()), id, URL, 1_000),
            Ok(AssertionFacts {
                jti: "a-1".into(),
                exp: 1_100
            })
        );
        let mut as_array = good.clone();
        as_array["aud"] = json!(["x", URL]);
        assert!(check_assertion(&claims(as_array), id, URL, 1_000).is_ok());
        for (field, value) in [
            ("iss", json!("someone-else")),
            ("sub", json!("someone-else")),
            ("aud", json!("https://api.example/other")),
            ("exp", json!(1_000)),
            ("exp", json!(1_301)),
            ("exp", json!("1100")),
            ("jti", json!("")),
            ("jti", json!(7)),
            ("nbf", json!(2_000)),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(
                check_assertion(&claims(bad), id, URL, 1_000).is_err(),
                "{field}"
            );
        }
        let mut no_jti = good;
        no_jti.as_object_mut().map(|o| o.remove("jti"));
        assert!(check_assertion(&claims(no_jti), id, URL, 1_000).is_err());
    }

    #[test]
    fn backend_scopes_are_system_scopes() {
        assert!(requested_scopes("system/Patient.rs system/Appointment.rs").is_ok());
        for bad in [
            "",
            "patient/*.rs",
            "user/Patient.rs",
            "system/Patient.rs openid",
            "system/Observation.rs",
        ] {
            assert!(requested_scopes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn registered_keys_are_public_and_named() {
        let rsa = json!({"keys": [{"kty": "RSA", "kid": "k1", "n": "abc", "e": "AQAB"}]});
        assert!(check_jwks(&rsa).is_ok());
        for bad in [
            json!({}),
            json!({"keys": []}),
            json!({"keys": [{"kty": "oct", "kid": "k", "k": "secret"}]}),
            json!({"keys": [{"kty": "RSA", "kid": "k", "n": "a", "e": "AQAB", "d": "private"}]}),
            json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "a", "y": "b"}]}),
        ] {
            assert!(check_jwks(&bad).is_err(), "{bad}");
        }
    }
}

/// What a backend token grants: the client's key, organization and roles,
/// narrowed by the scopes it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendGrant {
    /// The organization.
    pub org: OrgId,
    /// The client's service key.
    pub key: ServiceKeyId,
    /// The key's roles.
    pub roles: crate::RoleSet,
    /// The scopes asked for (`system/` only).
    pub scopes: Scopes,
}

/// Checks assertions' signatures against a client's registered keys.
pub trait AssertionVerifier: Send + Sync {
    /// The unverified `iss` of `assertion` (to find the client).
    fn issuer_of(&self, assertion: &str) -> Option<String>;

    /// The claims of `assertion` when its signature verifies against one
    /// of `jwks` (by `kid`, with an algorithm of [`ALGORITHMS`]).
    fn verify(&self, jwks: &str, assertion: &str) -> Result<Map<String, Value>, OAuthError>;
}

/// Issues the short-lived access tokens of backend clients.
pub trait BackendTokenIssuer: Send + Sync {
    /// A token for `grant`, valid [`ACCESS_TOKEN_SECS`] from `now`.
    fn issue_backend(
        &self,
        grant: &BackendGrant,
        now: time::OffsetDateTime,
    ) -> Result<secrecy::SecretString, crate::AuthError>;
}

/// A token request as the client sent it (form parameters).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenRequest<'a> {
    /// `grant_type`.
    pub grant_type: Option<&'a str>,
    /// `client_assertion_type`.
    pub assertion_type: Option<&'a str>,
    /// `client_assertion`.
    pub assertion: Option<&'a str>,
    /// `scope`.
    pub scope: Option<&'a str>,
    /// `client_id`, optional; when given, the assertion's.
    pub client_id: Option<&'a str>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Refused, as OAuth names it.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The store failed.
    #[error(transparent)]
    Auth(#[from] crate::AuthError),
}

/// The ports of the token exchange.
pub struct BackendServices<'a, S, V, I> {
    /// Service keys (the registered clients) and used assertions.
    pub keys: &'a S,
    /// Signature checks.
    pub verifier: &'a V,
    /// Token minting.
    pub issuer: &'a I,
}

impl<S, V, I> BackendServices<'_, S, V, I>
where
    S: crate::service_keys::ServiceKeyStore,
    V: AssertionVerifier,
    I: BackendTokenIssuer,
{
    /// Trades a client's signed assertion for an access token (SMART
    /// Backend Services): the client exists and is not revoked, the
    /// assertion is signed by one of its registered keys, names it and
    /// this endpoint (`token_url`), expires within five minutes and is used
    /// once; the scopes are `system/` ones. Returns the token and what it
    /// grants.
    pub async fn exchange(
        &self,
        request: TokenRequest<'_>,
        token_url: &str,
        now: time::OffsetDateTime,
    ) -> Result<(secrecy::SecretString, BackendGrant), ExchangeError> {
        if request.grant_type != Some(GRANT_TYPE) {
            return Err(OAuthError::UnsupportedGrantType.into());
        }
        if request.assertion_type != Some(ASSERTION_TYPE) {
            return Err(OAuthError::InvalidRequest(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .into());
        }
        let assertion = request
            .assertion
            .filter(|a| !a.is_empty() && a.len() <= 8192)
            .ok_or(OAuthError::InvalidRequest("client_assertion is required"))?;
        let scopes = requested_scopes(request.scope.unwrap_or_default())?;
        let client = self
            .verifier
            .issuer_of(assertion)
            .ok_or(OAuthError::InvalidClient("the assertion names no client"))?;
        if request.client_id.is_some_and(|c| c != client) {
            return Err(OAuthError::InvalidClient("client_id is not the assertion's").into());
        }
        let (org, key) =
            parse_client_id(&client).ok_or(OAuthError::InvalidClient("unknown client"))?;
        let system = carapace_tenancy::SubjectId::parse("system:backend-services")
            .map_err(|_| OAuthError::InvalidClient("subject"))?;
        let ctx = carapace_tenancy::TenantContext::new(org, system);
        let info = self
            .keys
            .active(&ctx, key)
            .await?
            .ok_or(OAuthError::InvalidClient("unknown client"))?;
        let jwks = info
            .jwks
            .as_deref()
            .ok_or(OAuthError::InvalidClient("unknown client"))?;
        let claims = self.verifier.verify(jwks, assertion)?;
        let unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let facts = check_assertion(&claims, &client, token_url, unix)?;
        let expires_at = i64::try_from(facts.exp)
            .ok()
            .and_then(|e| time::OffsetDateTime::from_unix_timestamp(e).ok())
            .ok_or(OAuthError::InvalidClient("bad exp"))?;
        if !self
            .keys
            .use_assertion(&ctx, key, &facts.jti, expires_at)
            .await?
        {
            return Err(OAuthError::InvalidClient("this assertion was already used").into());
        }
        let grant = BackendGrant {
            org,
            key,
            roles: info.roles,
            scopes,
        };
        let token = self.issuer.issue_backend(&grant, now)?;
        Ok((token, grant))
    }
}
