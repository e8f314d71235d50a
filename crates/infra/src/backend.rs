//! SMART Backend Services assertions: signatures checked against a
//! client's registered JWKS with `jsonwebtoken` (RSA and ECDSA through
//! `ring`, [`crate::jwt_crypto`]). The claims' rules are the domain's
//! ([`carapace_auth::backend::check_assertion`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carapace_auth::backend::{ALGORITHMS, AssertionVerifier, OAuthError};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

/// Verifies assertions with `jsonwebtoken`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JwtAssertions;

fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS.contains(&name).then_some(())?;
    match name {
        "RS384" => Some(Algorithm::RS384),
        "ES384" => Some(Algorithm::ES384),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

impl AssertionVerifier for JwtAssertions {
    fn issuer_of(&self, assertion: &str) -> Option<String> {
        let payload = assertion.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        claims.get("iss")?.as_str().map(str::to_owned)
    }

    fn verify(&self, jwks: &str, assertion: &str) -> Result<Map<String, Value>, OAuthError> {
        crate::jwt_crypto::install();
        let refused = OAuthError::InvalidClient("the assertion's signature does not verify");
        let header = decode_header(assertion)
            .map_err(|_| OAuthError::InvalidClient("the assertion is not a JWT"))?;
        let alg_name = format!("{:?}", header.alg);
        let alg = algorithm(&alg_name).ok_or(OAuthError::InvalidClient(
            "the assertion's alg must be RS384, ES384, RS256 or ES256",
        ))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or(OAuthError::InvalidClient("the assertion needs a kid"))?;
        let set: JwkSet = serde_json::from_str(jwks).map_err(|_| refused)?;
        let jwk = set
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .ok_or(OAuthError::InvalidClient("no registered key has this kid"))?;
        if let Some(key_alg) = &jwk.common.key_algorithm
            && format!("{key_alg:?}") != alg_name
        {
            return Err(OAuthError::InvalidClient(
                "the key is registered for another alg",
            ));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| refused)?;
        let mut validation = Validation::new(alg);
        // The audience, issuer and lifetime rules are checked by the domain
        // (check_assertion), which needs the claims as sent.
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        decode::<Map<String, Value>>(assertion, &key, &validation)
            .map(|d| d.claims)
            .map_err(|_| refused)
    }
}
