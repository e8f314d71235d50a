//! `Idempotency-Key` on creating POSTs (IETF httpapi idempotency-key
//! draft): a client that did not get an answer (a timeout, a 5xx at a
//! fault instant) retries with the same key and never creates twice.
//!
//! Wrapped around each creating resource (after routing). A POST with the
//! header, from a principal whose credentials verify, is fingerprinted
//! (method, path, body) and its key hashed with the organization and the
//! principal; then:
//! - a new key runs the request; its audit events mark the record
//!   `committed` in the write's own transaction, and a 2xx answer is kept
//!   (sealed) for 24 hours;
//! - the same key and request again: the first answer, with
//!   `Idempotent-Replayed: true`;
//! - the same key with another request: 422;
//! - the same key while the first request runs: 409;
//! - the first request committed but its answer was lost: 303 See Other to
//!   what it created (or 409 when that has no address), never a second
//!   write.
//!
//! Responses that carry a credential (a service key, a feed URL) are never
//! kept: a retry learns only that the first request succeeded (409 with
//! its `Location`).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, HttpRequest, HttpResponse, web};
use carapace_auth::TokenVerifier as _;
use carapace_infra::idempotency::{Begin, StoredResponse};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::ApiError;
use crate::state::State;

/// The creating resources wrapped by this middleware (path template, and
/// whether their answers are kept), for the API document. Each resource's
/// route registration wraps it with [`middleware`] or
/// [`credential_middleware`] accordingly.
pub const RESOURCES: &[(&str, bool)] = &[
    ("/api/v1/patients", true),
    ("/api/v1/appointments", true),
    ("/api/v1/patients/{id}/medications", true),
    ("/api/v1/patients/{id}/side-effects", true),
    ("/api/v1/patients/{id}/consents", true),
    ("/api/v1/referrals", true),
    ("/api/v1/verification-tasks", true),
    ("/api/v1/verification-tasks/{id}/transcript", true),
    ("/api/v1/assistant/messages", true),
    ("/api/v1/users", true),
    ("/api/v1/patients/{id}/break-glass", true),
    ("/api/v1/patients/{id}/care-team", true),
    ("/api/v1/service-keys", false),
    ("/api/v1/calendar-feeds", false),
];

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header of a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
const MAX_KEY: usize = 255;
/// Largest answer kept for replay.
const MAX_KEPT: usize = 256 * 1024;

/// The hashed idempotency record of the request being served.
#[derive(Clone, Copy, Debug)]
struct Marker([u8; 32]);

/// The request's hashed idempotency record, for its audit events.
pub fn marker(req: &HttpRequest) -> Option<[u8; 32]> {
    req.extensions().get::<Marker>().map(|m| m.0)
}

/// What is kept of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// Status, headers and body.
    Whole,
    /// Nothing but the fact: the body holds a credential.
    Nothing,
}

/// The resource at `path`, whose creating requests may carry an
/// `Idempotency-Key` ([`middleware`]).
pub fn resource(
    path: &str,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = Error,
        InitError = (),
    >,
> {
    web::resource(path).wrap(actix_web::middleware::from_fn(middleware))
}

/// Middleware for creating resources whose answers may be replayed.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    serve(req, next, Keep::Whole).await
}

/// Middleware for creating resources whose answers carry a credential.
pub async fn credential_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    serve(req, next, Keep::Nothing).await
}

/// The key: a structured-field string (`"…"`) or a bare token, 1-255
/// visible ASCII characters.
fn parse_key(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad =
        || ApiError::BadHeader("Idempotency-Key must be one string of 1-255 visible characters");
    if values.next().is_some() {
        return Err(bad());
    }
    let text = value.to_str().map_err(|_| bad())?.trim();
    let key = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if key.is_empty()
        || key.len() > MAX_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
    {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

async fn serve(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    keep: Keep,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if req.method() != Method::POST {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let key = match parse_key(&req) {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(next.call(req).await?.map_into_boxed_body()),
        Err(e) => return Ok(req.error_response(e).map_into_boxed_body()),
    };
    let Some(state) = req.app_data::<State>().cloned() else {
        return Ok(req
            .error_response(ApiError::Internal("application state missing".into()))
            .map_into_boxed_body());
    };
    // Whose key: without verified credentials the handler answers (401).
    let principal = match super::auth::credentials(req.request()) {
        Ok(token) => state.authenticator.verify(&token).await.ok(),
        Err(_) => None,
    };
    let Some(principal) = principal else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let body = match req.extract::<web::Bytes>().await {
        Ok(body) => body,
        Err(e) => return Ok(req.error_response(e).map_into_boxed_body()),
    };
    let request_hash: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(req.method().as_str().as_bytes());
        h.update(b"\n");
        h.update(req.path().as_bytes());
        h.update(b"\n");
        h.update(&body);
        h.finalize().into()
    };
    let key_hash: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(b"carapace-idempotency-key\0");
        h.update(principal.org().as_uuid().as_bytes());
        h.update(principal.subject().as_str().as_bytes());
        h.update(b"\0");
        h.update(key.as_bytes());
        h.finalize().into()
    };
    let ctx = principal.tenant();
    let begun = state
        .idempotency
        .begin(&ctx, key_hash, request_hash, OffsetDateTime::now_utc())
        .await;
    let refusal = match begun {
        Ok(Begin::New) => None,
        Ok(Begin::Replay(stored)) => {
            let res = replay(stored, keep);
            return Ok(req.into_response(res).map_into_boxed_body());
        }
        Ok(Begin::Mismatch) => Some(ApiError::Unprocessable {
            code: "idempotency_key_reused",
            detail: "this Idempotency-Key was used with another request; use a new key",
        }),
        Ok(Begin::InProgress) => Some(ApiError::Clash {
            code: "idempotency_key_in_use",
            detail: "a request with this Idempotency-Key is still running; retry in a moment",
        }),
        Ok(Begin::Committed {
            resource_type,
            resource_id,
        }) => {
            let res = committed(resource_type.as_deref(), resource_id.as_deref());
            return Ok(req.into_response(res).map_into_boxed_body());
        }
        Err(e) => Some(ApiError::from(e)),
    };
    if let Some(e) = refusal {
        return Ok(req.error_response(e).map_into_boxed_body());
    }
    req.extensions_mut().insert(Marker(key_hash));
    req.set_payload(payload_of(body));
    let res = next.call(req).await?.map_into_boxed_body();
    if !res.status().is_success() {
        // Nothing to keep; unless the write committed (its events marked
        // the record), the key is free for a retry.
        if let Err(e) = state.idempotency.release(&ctx, key_hash).await {
            tracing::error!(error = %e, "releasing an idempotency key failed");
        }
        return Ok(res);
    }
    let (http_req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let bytes = match actix_web::body::to_bytes_limited(body, MAX_KEPT).await {
        Ok(Ok(bytes)) => bytes,
        _ => {
            tracing::error!("an answer to keep for idempotency could not be read");
            let res = actix_web::ResponseError::error_response(&ApiError::Internal(
                "unreadable answer".into(),
            ));
            return Ok(ServiceResponse::new(http_req, res));
        }
    };
    let text = |name| {
        head.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let stored = StoredResponse {
        status: head.status().as_u16(),
        content_type: text(header::CONTENT_TYPE),
        location: text(header::LOCATION),
        body: if keep == Keep::Whole {
            bytes.to_vec()
        } else {
            Vec::new()
        },
    };
    if let Err(e) = state.idempotency.complete(&ctx, key_hash, &stored).await {
        // The work is done and answered; a retry meets the committed
        // record (or, without one, a stale pending one after a minute).
        tracing::error!(error = %e, "keeping an answer for idempotency failed");
    }
    Ok(ServiceResponse::new(
        http_req,
        head.set_body(BoxBody::new(bytes)),
    ))
}

/// The body again, for the handler.
fn payload_of(body: web::Bytes) -> Payload {
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, PayloadError>(body)));
    Payload::Stream {
        payload: Box::pin(stream),
    }
}

/// The first answer, again.
fn replay(stored: StoredResponse, keep: Keep) -> HttpResponse {
    if keep == Keep::Nothing {
        return committed_with(stored.location.as_deref());
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    res.insert_header((REPLAYED, "true"));
    if let Some(t) = stored.content_type {
        res.insert_header((header::CONTENT_TYPE, t));
    }
    if let Some(l) = stored.location {
        res.insert_header((header::LOCATION, l));
    }
    res.body(stored.body)
}

/// Where a resource of `resource_type` with `id` lives, if it has an
/// address of its own.
fn address(resource_type: Option<&str>, id: Option<&str>) -> Option<String> {
    let id = uuid::Uuid::try_parse(id?).ok()?;
    let collection = match resource_type? {
        "patient" => "patients",
        "appointment" => "appointments",
        "verification_task" => "verification-tasks",
        _ => return None,
    };
    Some(format!("/api/v1/{collection}/{id}"))
}

/// The first request committed, its answer was lost: see what it made.
fn committed(resource_type: Option<&str>, id: Option<&str>) -> HttpResponse {
    match address(resource_type, id) {
        Some(location) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .insert_header((REPLAYED, "true"))
            .finish(),
        None => committed_with(None),
    }
}

/// 409: done already, nothing to replay.
fn committed_with(location: Option<&str>) -> HttpResponse {
    let mut res = actix_web::ResponseError::error_response(&ApiError::Clash {
        code: "idempotency_key_completed",
        detail: "a request with this Idempotency-Key was already carried out; its answer is not kept",
    });
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        res.headers_mut().insert(header::LOCATION, l);
    }
    res.headers_mut().insert(
        header::HeaderName::from_static(REPLAYED),
        HeaderValue::from_static("true"),
    );
    res
}
