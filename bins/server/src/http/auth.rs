//! The credentials extractor: a handler that takes [`Authenticated`] runs
//! only for a verified principal (bearer token, or browser session cookie
//! with CSRF protection).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use carapace_auth::{AuthError, Principal, TokenVerifier as _};
use secrecy::SecretString;

use super::{ApiError, cookies};
use crate::state::AppState;

/// A request whose bearer token verified.
#[derive(Debug)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = credentials(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let token = token?;
            Ok(Self(state.authenticator.verify(&token).await?))
        })
    }
}

/// The bearer token, or, without an `Authorization` header, the browser
/// session cookie (then unsafe methods need the CSRF token).
fn credentials(req: &HttpRequest) -> Result<SecretString, ApiError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return bearer(req);
    }
    match cookies::value(req, cookies::SESSION) {
        Some(token) => {
            cookies::check_csrf(req)?;
            Ok(token)
        }
        None => Err(ApiError::Unauthenticated(AuthError::MissingCredentials)),
    }
}

fn bearer(req: &HttpRequest) -> Result<SecretString, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated(AuthError::MissingCredentials))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated(AuthError::InvalidToken("header is not text")))?;
    let (scheme, token) =
        value
            .split_once(' ')
            .ok_or(ApiError::Unauthenticated(AuthError::InvalidToken(
                "not a bearer token",
            )))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthenticated(AuthError::InvalidToken(
            "not a bearer token",
        )));
    }
    Ok(SecretString::from(token.trim().to_owned()))
}
