//! [`ApiError`]: every failure a handler can return, mapped to
//! `application/problem+json` in exactly one place. Bodies carry a stable
//! code and a generic message; causes go to the log, joined by request id.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use carapace_auth::AuthError;
use carapace_auth::policy::DenyReason;
use carapace_clinical::{ClinicalError, FieldError};
use carapace_tenancy::{StorageError, TenancyError};
use serde::Serialize;
use utoipa::ToSchema;

use super::request_id;

/// The problem document (RFC 9457) every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short, generic summary.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// The request's id (also in `X-Request-Id`).
    pub request_id: String,
    /// A stable machine-readable code.
    pub code: String,
    /// More detail, when it helps the client and reveals nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemField>>,
    /// On the OAuth token endpoint: the RFC 6749 error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On the OAuth token endpoint: the RFC 6749 error description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// One field-level problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    /// The field, as the client named it.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not well-formed JSON (or otherwise unreadable).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The query string is not acceptable.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// A request header is malformed (the detail says which and how).
    #[error("bad header: {0}")]
    BadHeader(&'static str),
    /// Authentication failed or was missing.
    #[error(transparent)]
    Unauthenticated(AuthError),
    /// Authenticated but not allowed.
    #[error("forbidden")]
    Forbidden,
    /// The permission is granted, but not for this patient (no care
    /// relationship; an emergency may use break-glass).
    #[error("no relationship to this patient")]
    NoRelationship,
    /// Allowed to the roles, but outside the token's SMART scopes.
    #[error("insufficient scope")]
    OutOfScope,
    /// The record changed since the version named in `If-Match`.
    #[error("precondition failed")]
    PreconditionFailed,
    /// Allowed only to an MFA session: the client must step up.
    #[error("MFA required")]
    StepUpRequired,
    /// A cookie session's unsafe request lacked the matching CSRF token,
    /// or an `Origin`/`Referer` among the configured origins.
    #[error("CSRF check failed")]
    CsrfFailed,
    /// No such resource (or another tenant's).
    #[error("not found")]
    NotFound,
    /// The method is not supported on this resource.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The request's headers are larger than the limit.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// The body is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Validation failed.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// The change conflicts with existing data.
    #[error("conflict")]
    Conflict,
    /// The change clashes with a rule of the record's state (409), with a
    /// specific code and explanation.
    #[error("conflict: {code}")]
    Clash {
        /// Stable code (`slot_taken`, `invalid_transition` …).
        code: &'static str,
        /// What clashed, in words.
        detail: &'static str,
    },
    /// Well-formed, but it cannot be processed as sent (422), with a
    /// specific code and explanation (an idempotency key reused with
    /// another request).
    #[error("unprocessable: {code}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// What is wrong, in words.
        detail: &'static str,
    },
    /// The rules refuse this whatever the input (403), with a specific
    /// code and explanation.
    #[error("refused: {code}")]
    Refused {
        /// Stable code.
        code: &'static str,
        /// Why, in words.
        detail: &'static str,
    },
    /// A feature is off here (503), with a specific code and explanation.
    #[error("off: {code}")]
    Off {
        /// Stable code.
        code: &'static str,
        /// Why, in words.
        detail: &'static str,
    },
    /// The database (or the key provider behind it) is unavailable: 503
    /// `storage_unavailable` with `Retry-After`, and never the cause.
    #[error("storage unavailable")]
    Unavailable(#[source] StorageError),
    /// Too many requests; retry after the duration.
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    /// A readiness check failed; the detail names the checks.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The kill switch is on: the service is stopped on purpose.
    #[error("suspended by the kill switch")]
    Suspended,
    /// Signed audit checkpoints have waited longer than the bound for the
    /// witness outside the database: PHI is not served (fail closed).
    #[error("audit witness backlog over its bound")]
    WitnessBacklog,
    /// The OAuth token endpoint refused (400, or 401 for `invalid_client`);
    /// the body also carries RFC 6749's `error` and `error_description`.
    #[error("oauth: {0}")]
    OAuth(carapace_auth::backend::OAuthError),
    /// A bulk export ended in failure: 500 with why (one of a few fixed
    /// sentences, never PHI), as the Bulk Data specification asks.
    #[error("export failed: {0}")]
    ExportFailed(&'static str),
    /// Anything else; the cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_body",
            Self::BadQuery(_) => "bad_query",
            Self::BadHeader(_) => "bad_header",
            Self::Unauthenticated(e) => e.code(),
            Self::Forbidden => "forbidden",
            Self::CsrfFailed => "csrf_failed",
            Self::StepUpRequired => "mfa_required",
            Self::NoRelationship => "no_relationship",
            Self::OutOfScope => "insufficient_scope",
            Self::PreconditionFailed => "version_conflict",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Invalid(_) => "validation_failed",
            Self::Conflict => "conflict",
            Self::Clash { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Refused { code, .. }
            | Self::Off { code, .. } => code,
            Self::Unavailable(_) => "storage_unavailable",
            Self::NotReady(_) => "not_ready",
            Self::Suspended => "kill_switch_on",
            Self::WitnessBacklog => "audit_witness_backlog",
            Self::RateLimited(_) => "rate_limited",
            Self::OAuth(e) => e.code(),
            Self::ExportFailed(_) => "export_failed",
            Self::Internal(_) => "internal",
        }
    }

    /// The problem body for this error (public for the fallback mapping
    /// of framework-generated errors).
    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let detail = match self {
            Self::Malformed(d) | Self::BadHeader(d) => Some((*d).to_owned()),
            Self::BadQuery(d) | Self::NotReady(d) => Some(d.clone()),
            Self::Clash { detail, .. }
            | Self::Unprocessable { detail, .. }
            | Self::Refused { detail, .. }
            | Self::Off { detail, .. } => Some((*detail).to_owned()),
            Self::Unauthenticated(AuthError::MissingCredentials) => {
                Some("send Authorization: Bearer <token>".to_owned())
            }
            Self::PayloadTooLarge => Some("the request body exceeds the size limit".to_owned()),
            Self::HeadersTooLarge => {
                Some("the request headers exceed 32 KiB in all; send less".to_owned())
            }
            Self::UnsupportedMediaType => Some("send Content-Type: application/json".to_owned()),
            Self::CsrfFailed => Some(
                "cookie sessions need X-CSRF-Token and an Origin among the configured origins on unsafe requests"
                    .to_owned(),
            ),
            Self::Suspended => Some(
                "the service is stopped by its operators (kill switch); retry later".to_owned(),
            ),
            Self::StepUpRequired => Some(
                "this needs an MFA session: complete MFA (amr must contain mfa) and retry"
                    .to_owned(),
            ),
            Self::OutOfScope => Some(
                "the token's SMART scopes do not cover this; ask for a wider scope".to_owned(),
            ),
            Self::PreconditionFailed => Some(
                "the record changed since the version in If-Match; read it again and retry"
                    .to_owned(),
            ),
            Self::OAuth(e) => Some(e.description().to_owned()),
            Self::ExportFailed(why) => Some((*why).to_owned()),
            Self::WitnessBacklog => Some(
                "the audit trail cannot be anchored outside the database right now; PHI is served again once it is"
                    .to_owned(),
            ),
            _ => None,
        };
        let errors = match self {
            Self::Invalid(errs) => Some(
                errs.iter()
                    .map(|e| ProblemField {
                        field: e.field.clone(),
                        message: e.message.clone(),
                    })
                    .collect(),
            ),
            _ => None,
        };
        Problem {
            type_: format!("urn:carapace:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            request_id: request_id::current().unwrap_or_default(),
            code: self.code().to_owned(),
            detail,
            errors,
            error: match self {
                Self::OAuth(e) => Some(e.code().to_owned()),
                _ => None,
            },
            error_description: match self {
                Self::OAuth(e) => Some(e.description().to_owned()),
                _ => None,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::BadQuery(_) | Self::BadHeader(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(AuthError::Forbidden | AuthError::StepUpRequired)
            | Self::Forbidden
            | Self::CsrfFailed
            | Self::StepUpRequired
            | Self::NoRelationship
            | Self::OutOfScope
            | Self::Refused { .. } => StatusCode::FORBIDDEN,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::Unauthenticated(AuthError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) | Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict | Self::Clash { .. } => StatusCode::CONFLICT,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_)
            | Self::NotReady(_)
            | Self::Suspended
            | Self::WitnessBacklog
            | Self::Off { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::OAuth(carapace_auth::backend::OAuthError::InvalidClient(_)) => {
                StatusCode::UNAUTHORIZED
            }
            Self::OAuth(_) => StatusCode::BAD_REQUEST,
            Self::ExportFailed(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        log(self);
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json");
        let challenge = match self {
            Self::Unauthenticated(
                AuthError::MissingCredentials | AuthError::InvalidCredentials,
            ) => Some(r#"Bearer realm="carapace""#),
            Self::Unauthenticated(AuthError::InvalidToken(_)) => {
                Some(r#"Bearer realm="carapace", error="invalid_token""#)
            }
            _ => None,
        };
        match self {
            Self::RateLimited(wait) => {
                res.insert_header((header::RETRY_AFTER, (wait.as_secs() + 1).to_string()));
            }
            Self::Unavailable(_)
            | Self::NotReady(_)
            | Self::Unauthenticated(AuthError::Unavailable) => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            Self::Suspended => {
                res.insert_header((header::RETRY_AFTER, "60"));
            }
            Self::WitnessBacklog => {
                res.insert_header((header::RETRY_AFTER, "30"));
            }
            Self::Off { .. } => {
                // A feature switched off by configuration: not back soon.
                res.insert_header((header::RETRY_AFTER, "3600"));
            }
            _ => {}
        }
        if let Some(value) = challenge {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static(value)));
        }
        res.json(self.problem())
    }
}

/// Logs server-side failures with their cause chain (never PHI: storage
/// errors drop row values before they get here).
fn log(err: &ApiError) {
    match err {
        ApiError::Unavailable(_) | ApiError::Internal(_) => {
            let mut chain = String::new();
            let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(err);
            while let Some(c) = cause {
                chain.push_str(": ");
                chain.push_str(&c.to_string());
                cause = c.source();
            }
            tracing::error!(code = err.code(), cause = %chain, "request failed");
        }
        ApiError::Unauthenticated(e) => {
            tracing::info!(code = err.code(), reason = %e, "authentication failed")
        }
        _ => tracing::debug!(code = err.code(), "request refused"),
    }
}

impl From<carapace_audit::AuditError> for ApiError {
    fn from(e: carapace_audit::AuditError) -> Self {
        match e.into_storage() {
            // The trail's database is out: an outage like any other (503).
            s @ StorageError::Unavailable(_) => Self::Unavailable(s),
            // A trail that refuses a write is no conflict of the client's.
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => Self::Unavailable(e),
            StorageError::Constraint(_) => Self::Conflict,
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<ClinicalError> for ApiError {
    fn from(e: ClinicalError) -> Self {
        match e {
            ClinicalError::Invalid(errs) => Self::Invalid(errs),
            ClinicalError::NotFound => Self::NotFound,
            ClinicalError::Conflict { code, detail } => Self::Clash { code, detail },
            ClinicalError::Refused { code, detail } => Self::Refused { code, detail },
            ClinicalError::Unavailable { code, detail } => Self::Off { code, detail },
            ClinicalError::Storage(s) => s.into(),
            ClinicalError::Denied(reason) => match reason {
                DenyReason::StepUpRequired(_) => Self::StepUpRequired,
                DenyReason::MissingPermission(_) => Self::Forbidden,
                DenyReason::NoRelationship(_) => Self::NoRelationship,
                DenyReason::OutOfScope(_) => Self::OutOfScope,
            },
            ClinicalError::VersionConflict => Self::PreconditionFailed,
            ClinicalError::Busy(wait) => Self::RateLimited(wait),
            ClinicalError::Audit(e) => e.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<TenancyError> for ApiError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::Storage(s) => s.into(),
            TenancyError::SlugTaken => Self::Conflict,
            other => Self::Invalid(vec![FieldError::new("request", other.to_string())]),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden => Self::Forbidden,
            AuthError::StepUpRequired => Self::StepUpRequired,
            AuthError::NotFound => Self::NotFound,
            AuthError::EmailTaken | AuthError::MfaAlreadyEnabled => Self::Conflict,
            AuthError::WeakPassword(why) => Self::Invalid(vec![FieldError::new("password", why)]),
            AuthError::InvalidRequest(why) => Self::Invalid(vec![FieldError::new("body", why)]),
            AuthError::Storage(s) => s.into(),
            AuthError::TooManyAttempts(wait) => Self::RateLimited(wait),
            other => Self::Unauthenticated(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_status_and_code() {
        let boxed = || -> Box<dyn std::error::Error + Send + Sync> { "secret cause".into() };
        let table: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::Malformed("x"), 400, "malformed_body"),
            (ApiError::BadQuery("x".into()), 400, "bad_query"),
            (
                ApiError::Unauthenticated(AuthError::MissingCredentials),
                401,
                "missing_credentials",
            ),
            (
                ApiError::Unauthenticated(AuthError::InvalidToken("x")),
                401,
                "invalid_token",
            ),
            (
                ApiError::Unauthenticated(AuthError::Unavailable),
                503,
                "auth_unavailable",
            ),
            (ApiError::Forbidden, 403, "forbidden"),
            (ApiError::CsrfFailed, 403, "csrf_failed"),
            (ApiError::StepUpRequired, 403, "mfa_required"),
            (ApiError::NoRelationship, 403, "no_relationship"),
            (ApiError::OutOfScope, 403, "insufficient_scope"),
            (ApiError::PreconditionFailed, 412, "version_conflict"),
            (
                ApiError::Refused {
                    code: "org_baa_missing",
                    detail: "x",
                },
                403,
                "org_baa_missing",
            ),
            (
                ApiError::Clash {
                    code: "slot_taken",
                    detail: "x",
                },
                409,
                "slot_taken",
            ),
            (
                ApiError::Off {
                    code: "ai_disabled",
                    detail: "x",
                },
                503,
                "ai_disabled",
            ),
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (ApiError::Invalid(vec![]), 422, "validation_failed"),
            (ApiError::Conflict, 409, "conflict"),
            (
                ApiError::Unavailable(StorageError::Unavailable(boxed())),
                503,
                "storage_unavailable",
            ),
            (
                ApiError::NotReady("database: unreachable".into()),
                503,
                "not_ready",
            ),
            (
                ApiError::ExportFailed("the export failed; start another"),
                500,
                "export_failed",
            ),
            (ApiError::Internal(boxed()), 500, "internal"),
        ];
        for (err, status, code) in table {
            assert_eq!(err.status_code().as_u16(), status, "{err:?}");
            if status == 503 || status == 429 {
                assert!(
                    err.error_response().headers().contains_key("retry-after"),
                    "{err:?}"
                );
            }
            let p = err.problem();
            assert_eq!((p.status, p.code.as_str()), (status, code));
            let body = serde_json::to_string(&p).unwrap_or_default();
            assert!(
                !body.contains("secret cause"),
                "causes never reach the body: {body}"
            );
        }
    }
}
