//! Extractor configuration: every extractor failure becomes an [`ApiError`].

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::{FromRequest, HttpRequest, web};
use carapace_clinical::FieldError;
use serde::de::DeserializeOwned;

use super::ApiError;

/// JSON bodies: at most `limit` bytes. The media type is checked by
/// [`JsonBody`] and [`MergePatchBody`] themselves: actix's own check lets
/// any `*/json` or `*+json` through whatever the predicate says.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .content_type(|mime| media_type_is(&mime, JSON))
        .error_handler(|err, _req: &HttpRequest| json_error(err).into())
}

/// The media type of JSON bodies.
const JSON: &[&str] = &["application/json"];
/// The media types of a JSON merge patch (RFC 7396).
const JSON_OR_MERGE_PATCH: &[&str] = &["application/json", "application/merge-patch+json"];

/// Whether `mime`'s essence is one of `accepted` and its charset, if
/// given, is UTF-8 (the only encoding of JSON).
fn media_type_is(mime: &actix_web::mime::Mime, accepted: &[&str]) -> bool {
    let essence = mime.essence_str();
    accepted.iter().any(|a| a.eq_ignore_ascii_case(essence))
        && mime
            .get_param(actix_web::mime::CHARSET)
            .is_none_or(|c| c.as_str().eq_ignore_ascii_case("utf-8"))
}

/// Whether `req` carries exactly one `Content-Type`, of one of `accepted`.
fn content_type_is(req: &HttpRequest, accepted: &[&str]) -> bool {
    use actix_web::HttpMessage as _;
    req.headers()
        .get_all(actix_web::http::header::CONTENT_TYPE)
        .count()
        == 1
        && matches!(req.mime_type(), Ok(Some(mime)) if media_type_is(&mime, accepted))
}

/// A JSON body of type `T`, sent as `application/json` (parameters such
/// as `charset=utf-8` allowed); any other media type, or none, is 415
/// before the body is read. The body is then parsed as JSON, so anything
/// malformed anywhere is 400; only then is its shape checked against `T`
/// (unknown, missing or mistyped fields are 422).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read::<T>(req, payload, JSON);
        Box::pin(async move { body.await.map(JsonBody) })
    }
}

/// A JSON merge patch (RFC 7396) of type `T`, for the PATCH routes that
/// document it: `application/merge-patch+json` or `application/json`;
/// otherwise as [`JsonBody`].
#[derive(Debug)]
pub struct MergePatchBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for MergePatchBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read::<T>(req, payload, JSON_OR_MERGE_PATCH);
        Box::pin(async move { body.await.map(MergePatchBody) })
    }
}

/// The media types of a FHIR resource.
const FHIR_OR_JSON: &[&str] = &["application/fhir+json", "application/json"];

/// A FHIR resource body as JSON, sent as `application/fhir+json` (or
/// `application/json`); otherwise as [`JsonBody`]. Its elements are read
/// by [`crate::fhir`], which names any at fault.
#[derive(Debug)]
pub struct FhirBody(pub serde_json::Value);

impl FromRequest for FhirBody {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read::<serde_json::Value>(req, payload, FHIR_OR_JSON);
        Box::pin(async move { body.await.map(FhirBody) })
    }
}

/// Reads a body of one of the `accepted` media types as `T`.
fn read<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    accepted: &'static [&'static str],
) -> Pin<Box<dyn Future<Output = Result<T, actix_web::Error>>>> {
    if !content_type_is(req, accepted) {
        return Box::pin(async { Err(ApiError::UnsupportedMediaType.into()) });
    }
    // The media type is checked; actix's check (which would let
    // `text/json` through) is not relied on.
    let json = web::Json::<serde_json::Value>::from_request(req, payload);
    Box::pin(async move {
        let value = json.await?.into_inner();
        bounded(&value, 1).map_err(ApiError::Malformed)?;
        // serde fills a struct from an array too (`[null]` would be a body
        // whose first field is null): every body Carapace takes is an object.
        if !value.is_object() {
            return Err(
                ApiError::Invalid(vec![FieldError::new("body", "must be a JSON object")]).into(),
            );
        }
        serde_json::from_value(value).map_err(|e| ApiError::Invalid(vec![shape_error(&e)]).into())
    })
}

/// Deepest nesting of arrays and objects accepted in a body.
pub const MAX_DEPTH: usize = 16;
/// Most elements in any array, and members in any object, of a body.
pub const MAX_ITEMS: usize = 256;

/// Whether `value` (at `depth`) stays within [`MAX_DEPTH`] and
/// [`MAX_ITEMS`]; the bodies Carapace accepts are small and flat, so
/// anything beyond is refused (400) before any field is looked at.
fn bounded(value: &serde_json::Value, depth: usize) -> Result<(), &'static str> {
    use serde_json::Value;
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) if items.len() > MAX_ITEMS => {
            return Err("a list in the body has more than 256 items");
        }
        Value::Object(members) if members.len() > MAX_ITEMS => {
            return Err("an object in the body has more than 256 members");
        }
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(members) => Box::new(members.values()),
        _ => return Ok(()),
    };
    if depth > MAX_DEPTH {
        return Err("the body is nested more than 16 levels deep");
    }
    for child in children {
        bounded(child, depth + 1)?;
    }
    Ok(())
}

/// Path parameters that do not parse name no resource: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err, _req| ApiError::NotFound.into())
}

/// Query strings that do not parse (unknown or repeated parameters): 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| ApiError::BadQuery(query_detail(&err.to_string())).into())
}

fn query_detail(msg: &str) -> String {
    // serde_urlencoded messages name the parameter, never echo values.
    match msg.find("unknown field `") {
        Some(i) => {
            let rest = &msg[i + 15..];
            let name: String = rest.chars().take_while(|c| *c != '`').take(64).collect();
            format!("unknown query parameter {name:?}")
        }
        None => "invalid query parameters".to_owned(),
    }
}

/// Maps a JSON extraction failure to the contract's statuses: 413 too
/// large, 415 wrong type, 400 malformed, 422 well-formed but wrong shape.
pub fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge
        }
        JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::PayloadTooLarge,
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::Invalid(vec![shape_error(&e)]),
        JsonPayloadError::Deserialize(_) => ApiError::Malformed("the body is not well-formed JSON"),
        _ => ApiError::Malformed("the body could not be read"),
    }
}

/// Turns serde's message into a field error without echoing any value.
fn shape_error(e: &serde_json::Error) -> FieldError {
    let msg = e.to_string();
    let quoted = |marker: &str| {
        msg.find(marker).map(|i| {
            msg[i + marker.len()..]
                .chars()
                .take_while(|c| *c != '`')
                .take(64)
                .collect::<String>()
        })
    };
    if let Some(field) = quoted("unknown field `") {
        FieldError::new(field, "is not accepted here")
    } else if let Some(field) = quoted("missing field `") {
        FieldError::new(field, "is required")
    } else if msg.starts_with("invalid type") {
        FieldError::new(
            "body",
            "a field has the wrong type (names and dates are strings)",
        )
    } else {
        FieldError::new("body", "does not match the expected shape")
    }
}

/// The position in an optional pagination `cursor` of `scope`, sealed for
/// `org`, decoded by `decode`. A cursor that does not open (another
/// organization's, another listing's, forged) or decode is 400.
pub fn open_cursor<T>(
    key: &carapace_tenancy::cursor::CursorKey,
    org: carapace_tenancy::OrgId,
    scope: &str,
    cursor: Option<&str>,
    decode: impl FnOnce(&[u8]) -> Option<T>,
) -> Result<Option<T>, super::ApiError> {
    let Some(c) = cursor else {
        return Ok(None);
    };
    key.open(org, scope, c)
        .ok()
        .and_then(|position| decode(&position))
        .map(Some)
        .ok_or_else(|| super::ApiError::BadQuery("invalid cursor".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed")]
    struct Body {
        name: String,
    }

    fn map(json: &str) -> ApiError {
        match serde_json::from_str::<Body>(json) {
            Ok(_) => panic!("expected an error for {json}"),
            Err(e) => json_error(JsonPayloadError::Deserialize(e)),
        }
    }

    #[test]
    fn malformed_is_400_and_wrong_shape_is_422_naming_the_field() {
        assert!(matches!(map("{\"name\": "), ApiError::Malformed(_)));
        assert!(matches!(map("not json"), ApiError::Malformed(_)));
        match map(r#"{"name":"a","org_id":"x"}"#) {
            ApiError::Invalid(e) => assert_eq!(e[0].field, "org_id"),
            other => panic!("{other:?}"),
        }
        match map(r#"{}"#) {
            ApiError::Invalid(e) => assert_eq!(e[0].field, "name"),
            other => panic!("{other:?}"),
        }
        match map(r#"{"name": 12345}"#) {
            ApiError::Invalid(e) => assert!(!e[0].message.contains("12345")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn query_details_name_parameters_only() {
        assert_eq!(
            query_detail("unknown field `foo`, expected one of"),
            "unknown query parameter \"foo\""
        );
        assert_eq!(
            query_detail("invalid digit found in string"),
            "invalid query parameters"
        );
    }
}
