//! Rate limits, charged to the route the router matched, never to the raw
//! path (which an attacker spells as they like: `%6Cogin`, `//`, `;x=1`):
//! - the unauthenticated authentication resources wrap [`charge_client`],
//!   so whatever spelling reached one of them is charged to the client
//!   address, before any work;
//! - authenticated routes are charged to their principal in the
//!   [`super::auth::Authorized`] extractor, once the credentials are
//!   verified, in the class of the matched route template
//!   ([`principal_class`]).

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest};
use carapace_auth::rate_limit::{LimitKey, RateLimiter as _, RouteClass, Verdict, client_ip};

use super::ApiError;
use crate::state::State;

/// The route templates of the AI surfaces (the `ai` class): the
/// assistant and speech.
const AI_PREFIXES: [&str; 2] = ["/api/v1/assistant", "/api/v1/voice"];

/// The class an authenticated request is charged to, from the route
/// template the router matched: `/api/v1/%61ssistant/messages` is the
/// assistant. A request without a matched template is charged to the
/// stricter `ai` class (fail closed).
pub fn principal_class(req: &HttpRequest) -> RouteClass {
    match req.match_pattern() {
        Some(pattern) if !is_ai(&pattern) => RouteClass::Api,
        _ => RouteClass::Ai,
    }
}

fn is_ai(pattern: &str) -> bool {
    AI_PREFIXES.iter().any(|prefix| {
        pattern == *prefix
            || pattern
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The client's address: the socket peer, or what a trusted proxy says.
pub fn client_address(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    let Some(state) = req.app_data::<State>() else {
        return Some(peer);
    };
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    Some(client_ip(peer, forwarded, &state.trusted_proxies))
}

/// Middleware for the resources anyone may call that guess or spend
/// secrets (login, MFA verify, refresh, password reset): each request is
/// charged per client address to [`RouteClass::Authentication`], and an
/// address over its quota gets 429 with `Retry-After`.
///
/// It wraps those resources themselves, so it runs after routing: every
/// spelling of the path that reaches the resource is charged, by
/// construction. A request whose address cannot be told (no socket peer)
/// shares one quota with every other such request.
pub async fn charge_client(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<State>().cloned() else {
        return Ok(req
            .error_response(ApiError::Internal("application state missing".into()))
            .map_into_boxed_body());
    };
    let ip = client_address(req.request()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Verdict::Deny { retry_after } = state
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_assistant_templates_are_ai() {
        assert!(is_ai("/api/v1/assistant"));
        assert!(is_ai("/api/v1/assistant/messages"));
        assert!(!is_ai("/api/v1/assistants"));
        assert!(is_ai("/api/v1/voice/transcriptions"));
        assert!(!is_ai("/api/v1/voicemails"));
        assert!(!is_ai("/api/v1/patients/{id}"));
    }
}
