//! The one token verification path: every bearer token goes through
//! [`Verifiers::verify`], which picks the verifier by the token's declared
//! algorithm and lets that verifier check everything. HS256 tokens are only
//! ever dev tokens, EdDSA only ever Carapace's own access tokens, and
//! RS256/PS256/ES256 only ever issuer tokens, so none passes as another.
//! Service keys (`cak_…`, opaque) are looked up by hash in their org.

use carapace_auth::{AuthError, Principal, TokenVerifier};
use jsonwebtoken::{Algorithm, decode_header};
use secrecy::{ExposeSecret as _, SecretString};

use carapace_auth::service_keys::{self, ServiceKeyStore as _};
use time::OffsetDateTime;

use carapace_auth::local::SessionStore as _;

use carapace_auth::subjects::{SubjectStore as _, admits};

use crate::accounts::{SeaAccounts, SeaSessions};
use crate::dev_token::DevTokens;
use crate::local_tokens::LocalTokens;
use crate::oidc::{MAX_TOKEN_LEN, OidcVerifier};
use crate::service_keys::SeaServiceKeys;

/// The configured verifiers.
#[derive(Debug, Default)]
pub struct Verifiers {
    dev: Option<DevTokens>,
    local: Option<LocalTokens>,
    oidc: Option<OidcVerifier>,
    service_keys: Option<SeaServiceKeys>,
    sessions: Option<SeaSessions>,
    subjects: Option<SeaAccounts>,
}

impl Verifiers {
    /// Verifiers for dev tokens, Carapace's own tokens and an OIDC issuer,
    /// each optional; with none, every token is refused.
    pub fn new(
        dev: Option<DevTokens>,
        local: Option<LocalTokens>,
        oidc: Option<OidcVerifier>,
    ) -> Self {
        Self {
            dev,
            local,
            oidc,
            service_keys: None,
            sessions: None,
            subjects: None,
        }
    }

    /// Refuses issuer tokens of subjects an administrator locked or
    /// deactivated, and those issued before the subject's last lock,
    /// checked on every request ([`carapace_auth::subjects`]).
    pub fn with_subject_check(mut self, subjects: SeaAccounts) -> Self {
        self.subjects = Some(subjects);
        self
    }

    /// Refuses Carapace access tokens whose session has ended (logout,
    /// reset, lock, deactivation, role change), checked on every request.
    pub fn with_session_check(mut self, sessions: SeaSessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Also accepts service keys (`cak_…`) found in `store`.
    pub fn with_service_keys(mut self, store: SeaServiceKeys) -> Self {
        self.service_keys = Some(store);
        self
    }

    /// The OIDC verifier, if an issuer is configured (for readiness).
    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.oidc.as_ref()
    }
}

/// The `iat` of a JWT whose signature and claims were already verified.
fn issued_at(token: &str) -> Option<OffsetDateTime> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let iat = claims.get("iat")?;
    let secs = iat.as_i64().or_else(|| {
        iat.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| {
                #[expect(clippy::as_conversions, reason = "finite and under 1e15: exact in i64")]
                let whole = f.floor() as i64;
                whole
            })
    })?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

impl TokenVerifier for Verifiers {
    async fn verify(&self, token: &SecretString) -> Result<Principal, AuthError> {
        let raw = token.expose_secret();
        if raw.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken("token too long"));
        }
        if service_keys::is_service_key(raw) {
            return match &self.service_keys {
                Some(store) => service_keys::verify(store, token, OffsetDateTime::now_utc()).await,
                None => Err(AuthError::InvalidToken(
                    "service keys are not accepted here",
                )),
            };
        }
        let header = decode_header(raw).map_err(|_| AuthError::InvalidToken("malformed token"))?;
        match header.alg {
            Algorithm::HS256 => match &self.dev {
                Some(dev) => dev.verify(token).await,
                None => Err(AuthError::InvalidToken("dev tokens are disabled")),
            },
            Algorithm::EdDSA => {
                let Some(local) = &self.local else {
                    return Err(AuthError::InvalidToken("local accounts are disabled"));
                };
                if header.typ.as_deref() == Some(crate::local_tokens::BACKEND_TYP) {
                    // A backend client's token lives only while its key does.
                    let (principal, key) = local.verify_backend(raw)?;
                    let Some(store) = &self.service_keys else {
                        return Err(AuthError::InvalidToken(
                            "backend clients are not accepted here",
                        ));
                    };
                    return match store.active(&principal.tenant(), key).await? {
                        Some(_) => Ok(principal),
                        None => Err(AuthError::InvalidToken("the client's key was revoked")),
                    };
                }
                let (principal, session) = local.verify_with_session(raw)?;
                if let Some(sessions) = &self.sessions
                    && !sessions.is_active(&principal.tenant(), session).await?
                {
                    return Err(AuthError::InvalidToken("session ended"));
                }
                Ok(principal)
            }
            _ => {
                let Some(oidc) = &self.oidc else {
                    return Err(AuthError::InvalidToken("no issuer configured"));
                };
                let principal = oidc.verify(raw).await?;
                if let Some(subjects) = &self.subjects {
                    let standing = subjects
                        .standing(&principal.tenant(), principal.subject())
                        .await?;
                    if !admits(standing.as_ref(), issued_at(raw)) {
                        return Err(AuthError::InvalidToken(
                            "subject locked or deactivated, or token issued before its lock",
                        ));
                    }
                }
                Ok(principal)
            }
        }
    }
}
