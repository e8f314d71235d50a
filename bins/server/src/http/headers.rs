//! Security headers on every response, and CORS from the configured exact
//! origins.

use actix_cors::Cors;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Content-Security-Policy for API responses: nothing may load, frame or
/// be framed.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Content-Security-Policy for the API docs (Swagger UI, served from this
/// origin): its own scripts and styles (it sets inline styles), its
/// images, and fetching the OpenAPI document; nothing from elsewhere.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Content-Security-Policy for the console (`/console/`): its own script
/// and style files, calls to this origin's API, nothing inline (no
/// `'unsafe-inline'`, not even for styles), nothing from elsewhere.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// HSTS in production: two years, subdomains included.
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Which headers a deployment sends.
#[derive(Clone, Copy, Debug)]
pub struct SecurityHeaders {
    /// Send `Strict-Transport-Security` (production: TLS is terminated in
    /// front of Carapace, and browsers must never use plain HTTP).
    pub hsts: bool,
}

impl SecurityHeaders {
    /// Stamps the headers on a response to `path`.
    pub fn apply(&self, path: &str, headers: &mut HeaderMap) {
        let csp = if path == "/docs" || path.starts_with("/docs/") {
            DOCS_CSP
        } else if path == "/console" || path.starts_with("/console/") {
            CONSOLE_CSP
        } else {
            API_CSP
        };
        let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
            headers.insert(name, HeaderValue::from_static(value));
        };
        // No response is cached anywhere: PHI must not linger in caches.
        set(headers, header::CACHE_CONTROL, "no-store");
        set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        set(headers, header::X_FRAME_OPTIONS, "DENY");
        set(headers, header::REFERRER_POLICY, "no-referrer");
        set(
            headers,
            HeaderName::from_static("permissions-policy"),
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), microphone=(), payment=(), usb=()",
        );
        set(headers, header::CONTENT_SECURITY_POLICY, csp);
        set(
            headers,
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        );
        set(
            headers,
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        );
        if self.hsts {
            set(headers, header::STRICT_TRANSPORT_SECURITY, HSTS);
        }
        headers.remove(header::SERVER);
    }
}

/// CORS for `origins` (exact `scheme://host[:port]` strings, validated by
/// the settings): those origins may call the API with credentials; any
/// other origin's preflight gets no allow headers, and its other requests
/// carry none (so a browser withholds the answer).
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-csrf-token"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            header::LOCATION,
        ])
        .supports_credentials()
        .block_on_origin_mismatch(false)
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_get_their_own_policy_and_everything_else_the_strict_one() {
        let mut h = HeaderMap::new();
        SecurityHeaders { hsts: false }.apply("/docs/index.html", &mut h);
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).map(|v| v.as_bytes()),
            Some(DOCS_CSP.as_bytes())
        );
        assert!(h.get(header::STRICT_TRANSPORT_SECURITY).is_none());
        let mut h = HeaderMap::new();
        SecurityHeaders { hsts: true }.apply("/api/v1/patients", &mut h);
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).map(|v| v.as_bytes()),
            Some(API_CSP.as_bytes())
        );
        assert_eq!(
            h.get(header::STRICT_TRANSPORT_SECURITY)
                .map(|v| v.as_bytes()),
            Some(HSTS.as_bytes())
        );
        let mut h = HeaderMap::new();
        SecurityHeaders { hsts: false }.apply("/console/", &mut h);
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).map(|v| v.as_bytes()),
            Some(CONSOLE_CSP.as_bytes())
        );
        assert!(!CONSOLE_CSP.contains("unsafe"));
        // "/docsX" is not the docs.
        let mut h = HeaderMap::new();
        SecurityHeaders { hsts: false }.apply("/docsX", &mut h);
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).map(|v| v.as_bytes()),
            Some(API_CSP.as_bytes())
        );
    }
}
