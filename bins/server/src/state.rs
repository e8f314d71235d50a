//! The application state shared by handlers: ports wired to adapters.

use carapace_auth::{AuthError, Principal, TokenVerifier};
use carapace_infra::dev_token::DevTokens;
use carapace_infra::{Database, SeaPatients};
use carapace_tenancy::cursor::CursorKey;
use secrecy::SecretString;

/// Which token verifier is wired in.
#[derive(Debug)]
pub enum Authenticator {
    /// Interim HS256 dev tokens (dev profile only).
    Dev(Box<DevTokens>),
    /// No verifier configured: every token is refused.
    None,
}

impl TokenVerifier for Authenticator {
    async fn verify(&self, token: &SecretString) -> Result<Principal, AuthError> {
        match self {
            Self::Dev(dev) => dev.verify(token).await,
            Self::None => Err(AuthError::InvalidToken("no token verifier configured")),
        }
    }
}

/// Everything handlers need.
#[derive(Debug)]
pub struct AppState {
    /// The database pool (health checks).
    pub db: Database,
    /// Patient storage.
    pub patients: SeaPatients,
    /// Bearer-token verification.
    pub authenticator: Authenticator,
    /// Seals pagination cursors to the caller's org.
    pub cursor_key: CursorKey,
}
