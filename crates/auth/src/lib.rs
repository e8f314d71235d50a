//! Authentication and authorization: who is calling, and what they may do.
//!
//! This crate owns [`Principal`] and [`Role`], the [`TokenVerifier`] port
//! that turns a bearer token into a principal, and the pure authorization
//! [`policy`] functions. Verifier adapters (dev tokens, OIDC with its JWKS,
//! local sessions, service keys) live in `carapace-infra`; this crate never
//! does I/O.

mod admin_change;
pub mod backend;
mod error;
pub mod feed_tokens;
pub mod issuer;
pub mod local;
mod opaque;
pub mod policy;
mod principal;
pub mod rate_limit;
pub mod service_keys;
pub mod smart;
pub mod subjects;

pub use error::AuthError;
pub use principal::{Principal, Role, RoleSet};

use std::future::Future;

use secrecy::SecretString;

/// Verifies a bearer token and returns the principal it proves.
pub trait TokenVerifier: Send + Sync {
    /// Checks the token's signature, algorithm, issuer, audience and
    /// lifetime; any failure is [`AuthError::InvalidToken`].
    fn verify(
        &self,
        token: &SecretString,
    ) -> impl Future<Output = Result<Principal, AuthError>> + Send;
}
