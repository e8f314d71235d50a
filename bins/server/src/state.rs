//! The application state shared by handlers: ports wired to adapters.

use carapace_infra::tokens::Verifiers;
use carapace_infra::{Database, SeaPatients};
use carapace_tenancy::cursor::CursorKey;

/// Everything handlers need.
#[derive(Debug)]
pub struct AppState {
    /// The database pool (health checks).
    pub db: Database,
    /// Patient storage.
    pub patients: SeaPatients,
    /// Bearer-token verification (dev tokens and/or an OIDC issuer).
    pub authenticator: Verifiers,
    /// Seals pagination cursors to the caller's org.
    pub cursor_key: CursorKey,
}
