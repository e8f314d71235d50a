//! Rate limits at the edge: the unauthenticated authentication routes are
//! charged to the client address here, before any work; authenticated
//! routes are charged to their principal in the [`super::auth::Authorized`]
//! extractor, once the credentials are verified.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, web};
use carapace_auth::rate_limit::{LimitKey, RateLimiter as _, RouteClass, Verdict, client_ip};

use super::ApiError;
use crate::state::AppState;

/// The routes anyone may call without credentials that guess or spend
/// secrets: charged per client address to [`RouteClass::Authentication`].
const UNAUTHENTICATED: &[&str] = &[
    "/api/v1/auth/login",
    "/api/v1/auth/mfa/verify",
    "/api/v1/auth/refresh",
    "/api/v1/auth/password-reset/request",
    "/api/v1/auth/password-reset/confirm",
];

/// The class an authenticated request on `path` is charged to.
pub fn principal_class(path: &str) -> RouteClass {
    if path.starts_with("/api/v1/assistant") {
        RouteClass::Ai
    } else {
        RouteClass::Api
    }
}

/// The client's address: the socket peer, or what a trusted proxy says.
pub fn client_address(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Some(peer);
    };
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    Some(client_ip(peer, forwarded, &state.trusted_proxies))
}

/// Middleware: 429 (with `Retry-After`) for an address over its
/// authentication quota.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if UNAUTHENTICATED.contains(&req.path())
        && let Some(state) = req.app_data::<web::Data<AppState>>().cloned()
        && let Some(ip) = client_address(req.request())
        && let Verdict::Deny { retry_after } = state
            .limiter
            .check(RouteClass::Authentication, &LimitKey::Client(ip))
            .await
    {
        tracing::warn!(class = "auth", "rate limit exceeded");
        state
            .metrics
            .rate_limited(RouteClass::Authentication.as_str());
        return Ok(req
            .error_response(ApiError::RateLimited(retry_after))
            .map_into_boxed_body());
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
