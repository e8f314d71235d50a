//! Errors on the FHIR surface: every `application/problem+json` answer to
//! a `/fhir/` request (the handlers', the extractors', the kill switch's,
//! the rate limiter's, unknown routes') leaves as an `OperationOutcome`
//! with the same status and headers. One mapping from [`crate::http::ApiError`] to
//! HTTP stays the only one (`crate::http::error`); this only changes the
//! body's shape.

use actix_web::body::{BoxBody, MessageBody, to_bytes_limited};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use serde_json::{Value, json};

use super::{FHIR_JSON, PREFIX};

/// The FHIR issue type of an HTTP status.
fn issue_code(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (_, "mfa_required") => "security",
        (400, _) => "invalid",
        (401, _) => "login",
        (403, _) => "forbidden",
        (404, _) => "not-found",
        (405 | 415 | 406, _) => "not-supported",
        (409 | 412, _) => "conflict",
        (413 | 431, _) => "too-costly",
        (422, _) => "invalid",
        (429, _) => "throttled",
        (503, _) => "transient",
        _ => "exception",
    }
}

/// The `OperationOutcome` for a problem body (`Problem` as JSON).
pub fn from_problem(problem: &Value) -> Value {
    let status = problem["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(500);
    let code = problem["code"].as_str().unwrap_or("internal");
    let details = json!({
        "coding": [{"system": "urn:carapace:problem", "code": code}],
        "text": code,
    });
    let diagnostics = problem["detail"]
        .as_str()
        .or_else(|| problem["title"].as_str())
        .unwrap_or("error");
    let mut issues: Vec<Value> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            json!({
                "severity": "error",
                "code": if e["message"].as_str().is_some_and(|m| m.contains("required")) { "required" } else { "value" },
                "details": details,
                "diagnostics": e["message"].as_str().unwrap_or("invalid"),
                "expression": [e["field"].as_str().unwrap_or("")],
            })
        })
        .collect();
    if issues.is_empty() {
        issues.push(json!({
            "severity": "error",
            "code": issue_code(status, code),
            "details": details,
            "diagnostics": diagnostics,
        }));
    }
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// Middleware: problem bodies on `/fhir/` become `OperationOutcome`s.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if !req.path().starts_with(PREFIX) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let res = next.call(req).await?;
    let problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if !problem {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let status = res.status();
    let headers = res.headers().clone();
    // Problem bodies are small and made here; anything else is no problem
    // body and is not touched.
    let body = to_bytes_limited(res.into_body(), 64 * 1024)
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or_else(|| json!({"status": status.as_u16(), "code": "internal"}));
    let mut out = HttpResponse::build(status);
    for (name, value) in &headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.append_header((name.clone(), value.clone()));
        }
    }
    out.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON)));
    let res = out.body(from_problem(&body).to_string());
    Ok(ServiceResponse::new(req, res).map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_outcomes_naming_the_element() {
        let oo = from_problem(&json!({
            "status": 422, "code": "validation_failed", "title": "Unprocessable Entity",
            "errors": [{"field": "Patient.birthDate", "message": "must not be in the future"}],
        }));
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"][0]["expression"][0], "Patient.birthDate");
        assert_eq!(oo["issue"][0]["severity"], "error");
        let oo =
            from_problem(&json!({"status": 412, "code": "version_conflict", "detail": "stale"}));
        assert_eq!(oo["issue"][0]["code"], "conflict");
        assert_eq!(oo["issue"][0]["diagnostics"], "stale");
        assert_eq!(
            oo["issue"][0]["details"]["coding"][0]["code"],
            "version_conflict"
        );
        for (status, code, want) in [
            (401, "invalid_token", "login"),
            (403, "forbidden", "forbidden"),
            (403, "mfa_required", "security"),
            (404, "not_found", "not-found"),
            (429, "rate_limited", "throttled"),
            (503, "kill_switch_on", "transient"),
            (500, "internal", "exception"),
        ] {
            let oo = from_problem(&json!({"status": status, "code": code}));
            assert_eq!(oo["issue"][0]["code"], want, "{status} {code}");
        }
    }
}
