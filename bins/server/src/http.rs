//! HTTP plumbing: the one error type and its problem+json mapping, the
//! request-id middleware, extractor configuration and the bearer-token
//! extractor.

pub mod access;
pub mod auth;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod headers;
pub mod idempotency;
pub mod kill_switch;
pub mod limits;
pub mod request_id;
pub mod wait_budget;
pub mod witness;

pub use error::ApiError;

/// What a handler answers: a response, or the one error type mapped to
/// problem+json.
pub type Reply = Result<actix_web::HttpResponse, ApiError>;
