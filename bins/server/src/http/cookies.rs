//! Browser sessions: `__Host-` cookies (`Secure`, `Path=/`, no `Domain`),
//! the access and refresh tokens `HttpOnly`, `SameSite=Strict`, and a
//! double-submit CSRF token that every unsafe method must echo in
//! `X-CSRF-Token`.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carapace_auth::local::IssuedTokens;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use super::ApiError;

/// The access-token cookie.
pub const SESSION: &str = "__Host-carapace_session";
/// The refresh-token cookie.
pub const REFRESH: &str = "__Host-carapace_refresh";
/// The CSRF cookie (readable by the page's script).
pub const CSRF: &str = "__Host-carapace_csrf";
/// The header an unsafe request repeats the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn cookie(
    name: &'static str,
    value: String,
    http_only: bool,
    max_age_secs: i64,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .secure(true)
        .http_only(http_only)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

/// A fresh CSRF token.
pub fn new_csrf_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The cookies of a browser session.
pub fn session(tokens: &IssuedTokens, csrf: &str) -> [Cookie<'static>; 3] {
    let access_ttl = i64::try_from(tokens.expires_in).unwrap_or(900);
    let session_ttl = 12 * 3600;
    [
        cookie(
            SESSION,
            tokens.access_token.expose_secret().to_owned(),
            true,
            access_ttl,
        ),
        cookie(
            REFRESH,
            tokens.refresh_token.expose_secret().to_owned(),
            true,
            session_ttl,
        ),
        cookie(CSRF, csrf.to_owned(), false, session_ttl),
    ]
}

/// Cookies that delete the session's cookies.
pub fn cleared() -> [Cookie<'static>; 3] {
    [SESSION, REFRESH, CSRF].map(|name| cookie(name, String::new(), true, 0))
}

/// A cookie's value, if present and of sane length.
pub fn value(req: &HttpRequest, name: &str) -> Option<SecretString> {
    req.cookie(name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 8 * 1024)
        .map(SecretString::from)
}

/// For unsafe methods, the `X-CSRF-Token` header must equal the CSRF cookie.
pub fn check_csrf(req: &HttpRequest) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let cookie = req.cookie(CSRF);
    match (header, cookie) {
        // Compare digests: equal-length, and no early exit on the secret.
        (Some(h), Some(c))
            if !h.is_empty()
                && Sha256::digest(h.as_bytes()) == Sha256::digest(c.value().as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(ApiError::CsrfFailed),
    }
}
