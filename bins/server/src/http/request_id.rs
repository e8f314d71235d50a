//! Request ids, structured request logs, and the last line of defence that
//! turns any framework-generated error (unknown route, wrong method) into
//! problem+json.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, ResponseError as _};
use futures_util::FutureExt as _;
use tracing::Instrument as _;

use super::ApiError;

/// Most bytes of request headers (names and values) accepted in all.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

fn headers_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// The request-id header.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest incoming request id kept.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An incoming id is kept only if it is 1-128 of `A-Z a-z 0-9 . _ : -`.
fn incoming(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(HEADER)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    ok.then(|| value.to_owned())
}

/// Middleware: assigns the request id, runs the request inside its span
/// and task-local, logs the outcome, and stamps the response.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = incoming(req.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The app's header policy (strictest when absent) and the path it
    // depends on, read before the request is handed on.
    let policy = req
        .app_data::<super::headers::SecurityHeaders>()
        .copied()
        .unwrap_or(super::headers::SecurityHeaders { hsts: true });
    let path = req.path().to_owned();
    if headers_size(req.headers()) > MAX_HEADER_BYTES {
        let res = REQUEST_ID.sync_scope(id.clone(), || ApiError::HeadersTooLarge.error_response());
        let mut res = req.into_response(res);
        if let Ok(value) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(HEADER, value);
        }
        policy.apply(&path, res.headers_mut());
        return Ok(res.map_into_boxed_body());
    }
    // The path only: query strings can carry PHI (member_id=…).
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = Instant::now();
    let result = AssertUnwindSafe(REQUEST_ID.scope(id.clone(), next.call(req)))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    // Handlers and extractors turn their errors into responses inside the
    // scope above; an `Err` here could only come from inner middleware,
    // which the framework renders. A panic becomes a generic 500 (rendered
    // by the framework from [`Panicked`]) and the worker goes on serving.
    let mut res = match result {
        Ok(result) => result?.map_into_boxed_body(),
        Err(_) => {
            span.in_scope(|| tracing::error!("handler panicked"));
            return Err(Panicked {
                request_id: id,
                policy,
                path,
            }
            .into());
        }
    };
    if res.status().as_u16() >= 400 && !is_problem(res.headers()) {
        let status = res.status();
        // A 405 says which methods the resource has (RFC 9110).
        let allow = (status == actix_web::http::StatusCode::METHOD_NOT_ALLOWED)
            .then(|| allowed_methods(res.request()))
            .flatten();
        let mut fallback = REQUEST_ID.sync_scope(id.clone(), || fallback(status));
        if let Some(allow) = allow {
            fallback.headers_mut().insert(header::ALLOW, allow);
        }
        res = res.into_response(fallback);
    }
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HEADER, value);
    }
    policy.apply(&path, headers);
    let took = started.elapsed();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16();
    let state = res
        .request()
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .cloned();
    let slow = state.as_ref().is_some_and(|s| took >= s.slow_request);
    if let Some(state) = &state {
        state
            .metrics
            .request(res.request().method().as_str(), &route, status, took, slow);
    }
    let _enter = span.enter();
    let elapsed_ms = took.as_secs_f64() * 1000.0;
    if slow {
        tracing::warn!(status, route, elapsed_ms, "slow request");
    } else {
        tracing::info!(status, elapsed_ms, "request completed");
    }
    Ok(res)
}

/// A handler panicked: rendered as a generic 500 problem with the
/// request's id and the usual headers, nothing of the panic.
#[derive(Debug)]
struct Panicked {
    request_id: String,
    policy: super::headers::SecurityHeaders,
    path: String,
}

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("internal error")
    }
}

impl actix_web::ResponseError for Panicked {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = REQUEST_ID.sync_scope(self.request_id.clone(), || {
            ApiError::Internal("handler panicked".into()).error_response()
        });
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            res.headers_mut().insert(HEADER, value);
        }
        self.policy.apply(&self.path, res.headers_mut());
        res
    }
}

/// The methods the route table has for the request's resource.
fn allowed_methods(req: &actix_web::HttpRequest) -> Option<HeaderValue> {
    let pattern = req.match_pattern()?;
    let methods: Vec<&str> = super::access::ROUTES
        .iter()
        .filter(|(_, p, _)| *p == pattern)
        .map(|(m, _, _)| *m)
        .collect();
    if methods.is_empty() {
        return None;
    }
    HeaderValue::from_str(&methods.join(", ")).ok()
}

fn is_problem(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
}

/// A problem response for an error status the framework produced itself.
fn fallback(status: actix_web::http::StatusCode) -> HttpResponse {
    let err = match status.as_u16() {
        404 => ApiError::NotFound,
        405 => ApiError::MethodNotAllowed,
        413 => ApiError::PayloadTooLarge,
        415 => ApiError::UnsupportedMediaType,
        400..=499 => ApiError::Malformed("the request could not be processed"),
        _ => ApiError::Internal("framework error".into()),
    };
    let mut res = err.error_response();
    *res.status_mut() = status;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HEADER, v);
        }
        h
    }

    #[test]
    fn keeps_valid_ids_and_replaces_others() {
        assert_eq!(
            incoming(&headers("abc-123_x.y:z")),
            Some("abc-123_x.y:z".into())
        );
        assert_eq!(incoming(&headers("")), None);
        assert_eq!(incoming(&headers("has space")), None);
        assert_eq!(incoming(&headers("<script>")), None);
        assert_eq!(incoming(&headers(&"a".repeat(129))), None);
        assert_eq!(incoming(&HeaderMap::new()), None);
    }
}
