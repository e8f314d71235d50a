//! The signature backend of `jsonwebtoken`: RSA (RS256/384/512,
//! PS256/384/512) and ECDSA (ES256/384, uncompressed keys) verification by
//! `ring`, whose assembly arithmetic is many times faster than the
//! pure-Rust `rsa` and `p256` crates (RSA alone was 30% of the server's CPU
//! under load; see docs/performance.md); every other operation (EdDSA,
//! HMAC, signing, JWK utilities) stays with `jsonwebtoken`'s RustCrypto
//! provider. `ring` is already the TLS stack's
//! crypto; nothing is implemented here but the adapter.

use std::sync::OnceLock;

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER as RUST_CRYPTO;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as ring_sig, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey};

/// RSA signatures checked by `ring` in this process (tests prove the
/// provider is in use).
pub static RING_RSA_VERIFICATIONS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

struct RingRsa {
    algorithm: Algorithm,
    key: DecodingKey,
}

fn parameters(algorithm: Algorithm) -> Option<&'static RsaParameters> {
    Some(match algorithm {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingRsa {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), jsonwebtoken::signature::Error> {
        let params = parameters(self.algorithm).ok_or_else(jsonwebtoken::signature::Error::new)?;
        RING_RSA_VERIFICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let checked = match self.key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            // PKCS#1 RSAPublicKey DER, as ring expects.
            DecodingKeyKind::SecretOrDer(der) => {
                UnparsedPublicKey::new(params, der).verify(msg, signature)
            }
        };
        checked.map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for RingRsa {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

struct RingEc {
    algorithm: Algorithm,
    point: Vec<u8>,
}

fn ec_parameters(
    algorithm: Algorithm,
) -> Option<(&'static ring_sig::EcdsaVerificationAlgorithm, usize)> {
    match algorithm {
        Algorithm::ES256 => Some((&ring_sig::ECDSA_P256_SHA256_FIXED, 65)),
        Algorithm::ES384 => Some((&ring_sig::ECDSA_P384_SHA384_FIXED, 97)),
        _ => None,
    }
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingEc {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), jsonwebtoken::signature::Error> {
        let (params, _) =
            ec_parameters(self.algorithm).ok_or_else(jsonwebtoken::signature::Error::new)?;
        RING_EC_VERIFICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        UnparsedPublicKey::new(params, &self.point)
            .verify(msg, signature)
            .map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for RingEc {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// ECDSA signatures checked by `ring` in this process.
pub static RING_EC_VERIFICATIONS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    (RUST_CRYPTO.signer_factory)(algorithm, key)
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if parameters(*algorithm).is_some() {
        if key.family() != AlgorithmFamily::Rsa {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        return Ok(Box::new(RingRsa {
            algorithm: *algorithm,
            key: key.clone(),
        }));
    }
    if let Some((_, len)) = ec_parameters(*algorithm)
        && key.family() == AlgorithmFamily::Ec
        && let DecodingKeyKind::SecretOrDer(point) = key.kind()
        && point.len() == len
        && point.first() == Some(&0x04)
    {
        return Ok(Box::new(RingEc {
            algorithm: *algorithm,
            point: point.clone(),
        }));
    }
    (RUST_CRYPTO.verifier_factory)(algorithm, key)
}

/// Makes this backend `jsonwebtoken`'s for the process. Idempotent; call it
/// before the first token is signed or verified (the verifiers' and
/// signers' constructors do).
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: signer,
        verifier_factory: verifier,
        key_utils: RUST_CRYPTO.key_utils.clone(),
    });
    let _ = provider.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &str = include_str!("../../testkit/fixtures/rsa1.pem");
    const PUBLIC: &str = include_str!("../../testkit/fixtures/rsa1.pub.pem");
    const JWK: &str = include_str!("../../testkit/fixtures/rsa1.jwk.json");

    #[test]
    fn ring_verifies_es256_from_a_jwk_and_refuses_changes() {
        install();
        let key = EncodingKey::from_ec_pem(include_bytes!("../../testkit/fixtures/ec1.pem"))
            .unwrap_or_else(|e| panic!("{e}"));
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_str(include_str!("../../testkit/fixtures/ec1.jwk.json"))
                .unwrap_or_else(|e| panic!("{e}"));
        let public = DecodingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("{e}"));
        let before = RING_EC_VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed);
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &serde_json::json!({"sub": "a"}),
            &key,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &public, &validation).is_ok());
        let (head, sig) = token.rsplit_once('.').unwrap_or_default();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &sig[1..]);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&tampered, &public, &validation).is_err()
        );
        assert!(RING_EC_VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed) >= before + 2);
    }

    #[test]
    fn ring_verifies_what_rustcrypto_signs_and_refuses_changes() {
        install();
        let key = EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_str(JWK).unwrap_or_else(|e| panic!("{e}"));
        let publics = [
            DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
            DecodingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("{e}")),
        ];
        let claims = serde_json::json!({"sub": "a"});
        let before = RING_RSA_VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed);
        for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::RS512] {
            let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut validation = jsonwebtoken::Validation::new(alg);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            for public in &publics {
                assert!(
                    jsonwebtoken::decode::<serde_json::Value>(&token, public, &validation).is_ok(),
                    "{alg:?}"
                );
                let (head, sig) = token.rsplit_once('.').unwrap_or_default();
                let flipped = if sig.starts_with('A') { "B" } else { "A" };
                let tampered = format!("{head}.{flipped}{}", &sig[1..]);
                assert!(
                    jsonwebtoken::decode::<serde_json::Value>(&tampered, public, &validation)
                        .is_err(),
                    "a changed signature is refused"
                );
            }
        }
        assert!(
            RING_RSA_VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed) >= before + 12,
            "ring did the RSA work"
        );
    }
}
