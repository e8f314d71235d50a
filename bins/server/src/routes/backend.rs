//! `POST /api/v1/auth/token`: SMART Backend Services. A registered
//! backend client (a service key holding a public JWKS) trades an
//! assertion signed by one of its keys for a five-minute access token with
//! `system/` scopes ([`carapace_auth::backend::BackendServices`]).

use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use carapace_audit::SecurityEventKind;
use carapace_auth::backend::{ACCESS_TOKEN_SECS, BackendServices, ExchangeError, TokenRequest};
use carapace_infra::backend::JwtAssertions;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::http::error::Problem;
use crate::http::{ApiError, Reply};
use crate::state::{AppState, State};

/// Where the token endpoint lives.
pub const TOKEN_PATH: &str = "/api/v1/auth/token";

/// Registers the route (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/token").route(web::post().to(token)));
}

/// The token endpoint's absolute URL: the `aud` assertions must name.
pub fn token_url(req: &HttpRequest, state: &AppState) -> String {
    match state.public_url.as_deref() {
        Some(url) => format!("{url}{TOKEN_PATH}"),
        None => {
            let info = req.connection_info();
            format!("{}://{}{TOKEN_PATH}", info.scheme(), info.host())
        }
    }
}

/// A token request (`application/x-www-form-urlencoded`).
#[derive(ToSchema)]
#[expect(dead_code, reason = "documents the form; the handler reads the pairs")]
pub struct TokenForm {
    /// `client_credentials`.
    grant_type: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    client_assertion_type: String,
    /// The signed JWT: `iss` = `sub` = the client id, `aud` = this
    /// endpoint, `exp` within five minutes, a unique `jti`.
    client_assertion: String,
    /// `system/` scopes, space-separated.
    scope: String,
}

/// An access token for a backend client.
#[derive(Serialize, ToSchema)]
pub struct BackendToken {
    /// The bearer token.
    access_token: String,
    /// `bearer`.
    token_type: &'static str,
    /// Seconds it lives.
    expires_in: u64,
    /// The scopes it holds.
    scope: String,
}

/// Trades a backend client's signed assertion for an access token.
#[utoipa::path(post, operation_id = "auth_backend_token", path = "/api/v1/auth/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = BackendToken),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope (also as RFC 6749 error)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "invalid_client", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn token(req: HttpRequest, state: State, body: web::Bytes) -> Reply {
    let form = req
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|m| m.essence_str() == "application/x-www-form-urlencoded");
    if !form {
        return Err(ApiError::UnsupportedMediaType);
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) || pairs.len() > 8 {
        return Err(ApiError::OAuth(
            carapace_auth::backend::OAuthError::InvalidRequest("a parameter is repeated"),
        ));
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let request = TokenRequest {
        grant_type: get("grant_type"),
        assertion_type: get("client_assertion_type"),
        assertion: get("client_assertion"),
        scope: get("scope"),
        client_id: get("client_id"),
    };
    let Some(local) = state.local.as_ref() else {
        return Err(ApiError::Off {
            code: "backend_services_off",
            detail: "backend services need Carapace's signing key (local accounts)",
        });
    };
    let services = BackendServices {
        keys: &state.service_keys,
        verifier: &JwtAssertions,
        issuer: &local.tokens,
    };
    let url = token_url(&req, &state);
    match services
        .exchange(request, &url, OffsetDateTime::now_utc())
        .await
    {
        Ok((token, grant)) => {
            let subject = carapace_tenancy::SubjectId::parse(&format!("service:{}", grant.key))
                .map_err(|e| ApiError::Internal(Box::new(e)))?;
            let scope = grant.scopes.to_claim().unwrap_or_default();
            let mut event = carapace_audit::SecurityEvent::new(
                SecurityEventKind::LoginSucceeded,
                grant.org,
                subject,
                format!("backend services token: {scope}"),
            );
            event.origin = crate::http::auth::origin(&req);
            crate::http::auth::record(&state, event).await?;
            Ok(HttpResponse::Ok().json(BackendToken {
                access_token: token.expose_secret().to_owned(),
                token_type: "bearer",
                expires_in: ACCESS_TOKEN_SECS,
                scope,
            }))
        }
        Err(ExchangeError::OAuth(e)) => {
            tracing::warn!(error = %e, "backend services token refused");
            Err(ApiError::OAuth(e))
        }
        Err(ExchangeError::Auth(e)) => Err(e.into()),
    }
}
