//! The one token verification path: every bearer token goes through
//! [`Verifiers::verify`], which picks the verifier by the token's declared
//! algorithm family and lets that verifier check everything. Symmetric
//! (HS256) tokens are only ever dev tokens; asymmetric ones only ever issuer
//! tokens, so neither can be passed off as the other.

use carapace_auth::{AuthError, Principal, TokenVerifier};
use jsonwebtoken::{Algorithm, decode_header};
use secrecy::{ExposeSecret as _, SecretString};

use crate::dev_token::DevTokens;
use crate::oidc::{MAX_TOKEN_LEN, OidcVerifier};

/// The configured verifiers.
#[derive(Debug, Default)]
pub struct Verifiers {
    dev: Option<DevTokens>,
    oidc: Option<OidcVerifier>,
}

impl Verifiers {
    /// Verifiers for dev tokens and/or an OIDC issuer; with neither, every
    /// token is refused.
    pub fn new(dev: Option<DevTokens>, oidc: Option<OidcVerifier>) -> Self {
        Self { dev, oidc }
    }

    /// The OIDC verifier, if an issuer is configured (for readiness).
    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.oidc.as_ref()
    }
}

impl TokenVerifier for Verifiers {
    async fn verify(&self, token: &SecretString) -> Result<Principal, AuthError> {
        let raw = token.expose_secret();
        if raw.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken("token too long"));
        }
        let header = decode_header(raw).map_err(|_| AuthError::InvalidToken("malformed token"))?;
        match (header.alg, &self.dev, &self.oidc) {
            (Algorithm::HS256, Some(dev), _) => dev.verify(token).await,
            (Algorithm::HS256, None, _) => Err(AuthError::InvalidToken("dev tokens are disabled")),
            (_, _, Some(oidc)) => oidc.verify(raw).await,
            (_, _, None) => Err(AuthError::InvalidToken("no issuer configured")),
        }
    }
}
