//! Browser sessions: `__Host-` cookies (`Secure`, `Path=/`, no `Domain`),
//! the access and refresh tokens `HttpOnly`, `SameSite=Strict`, and two
//! CSRF defences on every unsafe method: a double-submit token echoed in
//! `X-CSRF-Token`, and an `Origin` (or, without one, a `Referer`) among the
//! configured origins (`CARAPACE_CORS_ORIGINS`).

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{Method, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carapace_auth::local::IssuedTokens;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use super::ApiError;
use crate::state::State;
pub use crate::state::origins::TrustedOrigins;

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

/// Whether an unsafe request came from a page of a trusted origin: its
/// one `Origin` header decides when present (so `Origin: null` is
/// refused); without one, its one `Referer`; with neither, it did not.
fn from_trusted_origin(req: &HttpRequest, trusted: &TrustedOrigins) -> bool {
    let only = |name| {
        let mut values = req.headers().get_all(name);
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v.to_str().ok()),
            (None, _) => None,
            // Two of them: neither is believed.
            (Some(_), Some(_)) => Some(None),
        }
    };
    match only(header::ORIGIN) {
        Some(origin) => origin.is_some_and(|o| trusted.allows_origin(o)),
        None => only(header::REFERER).is_some_and(|r| r.is_some_and(|r| trusted.allows_referer(r))),
    }
}

/// A sign-in that asks for a cookie session (login, the MFA step) must
/// come from a page of a trusted origin: otherwise another site's page
/// could sign the browser in as the attacker's account (login CSRF). There
/// is no CSRF cookie yet to compare, so the origin alone decides.
pub fn check_signin_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let trusted = req
        .app_data::<State>()
        .is_some_and(|state| from_trusted_origin(req, &state.trusted_origins));
    if trusted {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed)
    }
}

/// For unsafe methods, the `X-CSRF-Token` header must equal the CSRF
/// cookie, and the request must come from a trusted origin
/// ([`TrustedOrigins`], from the application state; none: refused).
pub fn check_csrf(req: &HttpRequest) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let cookie = req.cookie(CSRF);
    let token_matches = match (header, cookie) {
        // Compare digests: equal-length, and no early exit on the secret.
        (Some(h), Some(c)) => {
            !h.is_empty() && Sha256::digest(h.as_bytes()) == Sha256::digest(c.value().as_bytes())
        }
        _ => false,
    };
    let origin_trusted = req
        .app_data::<State>()
        .is_some_and(|state| from_trusted_origin(req, &state.trusted_origins));
    if token_matches && origin_trusted {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn trusted() -> TrustedOrigins {
        TrustedOrigins::new(&[
            "https://app.example.org".into(),
            "http://localhost:3000".into(),
        ])
    }

    fn from(headers: &[(&str, &str)]) -> bool {
        let mut req = TestRequest::post();
        for (n, v) in headers {
            req = req.append_header((*n, *v));
        }
        from_trusted_origin(&req.to_http_request(), &trusted())
    }

    #[test]
    fn only_configured_origins_are_trusted() {
        assert!(from(&[("origin", "https://app.example.org")]));
        assert!(from(&[("origin", "http://localhost:3000")]));
        assert!(from(&[(
            "referer",
            "https://app.example.org/patients/1?x=y"
        )]));
        for refused in [
            vec![],
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "https://app.example.org.evil.example")],
            vec![("origin", "https://app.example.org/")],
            vec![("origin", "https://app.example.org:8443")],
            vec![("origin", "http://app.example.org")],
            vec![("origin", "HTTPS://APP.EXAMPLE.ORG")],
            vec![("origin", "")],
            vec![
                ("origin", "https://app.example.org"),
                ("origin", "https://evil.example"),
            ],
            // An Origin decides, whatever the Referer says.
            vec![
                ("origin", "https://evil.example"),
                ("referer", "https://app.example.org/"),
            ],
            vec![("referer", "https://evil.example/https://app.example.org")],
            vec![("referer", "https://app.example.org@evil.example/")],
            vec![("referer", "https://app.example.org.evil.example/")],
            vec![("referer", "not a url")],
        ] {
            assert!(!from(&refused), "{refused:?}");
        }
    }

    #[test]
    fn no_configured_origin_trusts_nothing() {
        let none = TrustedOrigins::new(&["not an origin".into(), "null".into()]);
        let req = TestRequest::post()
            .append_header(("origin", "null"))
            .to_http_request();
        assert!(!from_trusted_origin(&req, &none));
    }
}
