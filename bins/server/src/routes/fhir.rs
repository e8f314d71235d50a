//! `/fhir/R4`: the FHIR R4 API. Each interaction parses, calls the same
//! use case as its REST route, and writes the answer as FHIR JSON
//! ([`crate::fhir`]); access rules and SMART scopes are checked at the door
//! ([`crate::http::access::ROUTES`], [`crate::http::access::INTERACTIONS`]).

pub mod appointment;
pub mod audit_event;
pub mod clinical;
pub mod consultation;
pub mod export;
mod params;
pub mod patient;
pub mod practitioner;
pub mod task;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use carapace_clinical::patient::PatientId;
use uuid::Uuid;

use crate::fhir::bundle::{self, Entry, Mode};
use crate::fhir::capability::{self, SearchParam};
use crate::fhir::{FHIR_JSON, base_url};
use crate::http::ApiError;
use crate::state::{AppState, State};

pub(crate) use params::{PAGING, Params, patient_ref};

/// Registers the FHIR routes (under [`crate::fhir::BASE_PATH`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metadata", web::get().to(metadata))
        .route(
            "/.well-known/smart-configuration",
            web::get().to(smart_configuration),
        )
        // Before `Patient/{id}`, which `Patient/$export` would match.
        .configure(export::configure)
        .configure(patient::configure)
        .configure(appointment::configure)
        .configure(audit_event::configure)
        .configure(clinical::configure)
        .configure(task::configure)
        .configure(consultation::configure)
        .configure(practitioner::configure)
        .default_service(web::to(crate::routes::not_found));
}

/// A FHIR resource (`application/fhir+json`): its shape is the FHIR R4
/// specification's for its `resourceType`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resource {
    /// The resource type.
    #[serde(rename = "resourceType")]
    pub resource_type: String,
}

/// A search's answer, for the OpenAPI document: a `searchset` Bundle.
pub struct Searchset;

impl utoipa::IntoResponses for Searchset {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let bundle = ResponseBuilder::new()
            .description("a searchset Bundle")
            .content(
                "application/fhir+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Resource")))
                    .build(),
            )
            .build();
        [("200".to_owned(), bundle.into())].into()
    }
}

/// The paging parameters of a search that pages (100 matches at most).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// page size, 1-100
    #[param(rename = "_count")]
    pub count: Option<String>,
    /// from the next link
    #[param(rename = "_cursor")]
    pub cursor: Option<String>,
}

/// A FHIR `OperationOutcome`: what went wrong, each issue naming the
/// element at fault (`expression`) where there is one.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationOutcome {
    /// Always `OperationOutcome`.
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    /// The issues.
    pub issue: Vec<serde_json::Value>,
}

/// A search parameter's (or element's) problem, naming it: 422.
pub(crate) fn bad(param: &str, message: &str) -> ApiError {
    ApiError::Invalid(vec![carapace_clinical::FieldError::new(
        param.to_owned(),
        message.to_owned(),
    )])
}

/// A domain parse's field errors, each renamed to the FHIR element
/// `element` names for it.
pub(crate) fn named(
    e: carapace_clinical::ClinicalError,
    element: impl Fn(&str) -> String,
) -> carapace_clinical::ClinicalError {
    use carapace_clinical::{ClinicalError, FieldError};
    match e {
        ClinicalError::Invalid(errors) => ClinicalError::Invalid(
            errors
                .into_iter()
                .map(|f| FieldError::new(element(&f.field), f.message))
                .collect(),
        ),
        other => other,
    }
}

/// A created resource: 201 with its `Location` (`<base>/<kind>/<id>`).
pub(crate) fn created(
    req: &HttpRequest,
    state: &AppState,
    kind: &str,
    id: &str,
    body: &serde_json::Value,
) -> HttpResponse {
    let mut res = fhir_json(StatusCode::CREATED, body);
    if let Ok(v) = header::HeaderValue::from_str(&format!("{}/{kind}/{id}", base(req, state))) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// What a versioned resource's answer says of it in its headers.
pub(crate) struct Versioned<'a> {
    /// The resource type (`Patient`).
    pub kind: &'static str,
    /// Its id.
    pub id: &'a dyn std::fmt::Display,
    /// Its `versionId`.
    pub version: &'a dyn std::fmt::Display,
    /// When it last changed, where the resource knows.
    pub modified: Option<time::OffsetDateTime>,
}

/// A versioned resource's answer: its JSON with `ETag`, `Last-Modified`
/// where known, and on 201 a `Location` naming the version.
pub(crate) fn versioned(
    status: StatusCode,
    body: &serde_json::Value,
    base: &str,
    it: &Versioned<'_>,
) -> HttpResponse {
    let mut res = fhir_json(status, body);
    let modified = it.modified.and_then(|at| {
        at.to_offset(time::UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc2822)
            .ok()
            .map(|s| s.replace("+0000", "GMT"))
    });
    let location = (status == StatusCode::CREATED)
        .then(|| format!("{base}/{}/{}/_history/{}", it.kind, it.id, it.version));
    let headers = res.headers_mut();
    for (name, value) in [
        (header::ETAG, Some(crate::fhir::etag(it.version))),
        (header::LAST_MODIFIED, modified),
        (header::LOCATION, location),
    ] {
        if let Some(v) = value.and_then(|v| header::HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    }
    res
}

/// Search parameter `name`'s date or instant `value` with its prefix
/// (`eq`, `ge`, `gt`, `le`, `lt`) as bounds [from, to) at `precision`:
/// 422 naming it otherwise.
pub(crate) fn date_param(
    name: &str,
    value: &str,
    precision: time::Duration,
) -> Result<(Option<time::OffsetDateTime>, Option<time::OffsetDateTime>), ApiError> {
    crate::fhir::date_bounds(value, precision).ok_or_else(|| {
        bad(
            name,
            "eq, ge, gt, le or lt and a date (YYYY-MM-DD) or an instant",
        )
    })
}

/// A `vread`'s check: only the current version is kept, so any other
/// `vid` is 404.
pub(crate) fn at_version(current: impl std::fmt::Display, vid: &str) -> Result<(), ApiError> {
    if current.to_string() == vid {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// A FHIR JSON answer.
pub(crate) fn fhir_json(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(body.to_string())
}

/// The FHIR base URL for `req`.
pub(crate) fn base(req: &HttpRequest, state: &AppState) -> String {
    base_url(req, state.public_url.as_deref())
}

/// A search as asked: its parameters (at most 16, JSON `_format` only)
/// and the base URL its links are written under.
pub struct Search {
    /// The query's name-value pairs.
    pub params: Vec<(String, String)>,
    /// The FHIR base URL.
    pub base: String,
}

impl actix_web::FromRequest for Search {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(match req.app_data::<State>() {
            Some(state) => query_pairs(req).map(|params| Self {
                params,
                base: base(req, state),
            }),
            None => Err(ApiError::Internal("no application state".into())),
        })
    }
}

/// The query of `req` as name-value pairs (a name may repeat); `_format`
/// other than JSON is 406: this server speaks JSON only.
pub(crate) fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    let query = req.query_string();
    if query.len() > 2048 {
        return Err(ApiError::BadQuery(
            "the query is longer than 2048 bytes".into(),
        ));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.len() > capability::QUERY_PARAMS_MAX {
        return Err(ApiError::BadQuery(format!(
            "more than {} query parameters",
            capability::QUERY_PARAMS_MAX
        )));
    }
    for (k, v) in &pairs {
        if k == "_format"
            && !matches!(
                v.as_str(),
                "json" | "application/json" | "application/fhir+json"
            )
        {
            return Err(ApiError::Unprocessable {
                code: "format_not_supported",
                detail: "this server answers FHIR JSON only (_format=json)",
            });
        }
    }
    Ok(pairs.into_iter().filter(|(k, _)| k != "_format").collect())
}

/// The one patient a search of `kind` names (`patient`, or `subject`
/// where `declared` has it); every other parameter is refused.
pub(crate) fn patient_of(
    req: &HttpRequest,
    kind: &str,
    declared: &[SearchParam],
) -> Result<PatientId, ApiError> {
    let params = query_pairs(req)?;
    let p = Params::check(&params, &format!("the {kind} search"), &[declared])?;
    match (p.one("patient"), p.one("subject")) {
        (Some(_), Some(_)) => Err(bad("subject", "give the patient once")),
        (Some(v), None) => patient_ref("patient", v),
        (None, Some(v)) => patient_ref("subject", v),
        (None, None) => Err(bad("patient", "is required")),
    }
}

/// The id a read's URL names, as `id` makes it: no resource (404) unless
/// it is a hyphenated UUID.
pub(crate) fn read_id<T>(raw: &str, id: fn(Uuid) -> T) -> Result<T, ApiError> {
    crate::fhir::path_id(raw).map(id).ok_or(ApiError::NotFound)
}

/// A `searchset` Bundle of `kind` resources (id, resource), all matches.
pub(crate) fn searchset(
    req: &HttpRequest,
    state: &AppState,
    kind: &str,
    resources: Vec<(String, serde_json::Value)>,
) -> HttpResponse {
    let base = base(req, state);
    let params = query_pairs(req).unwrap_or_default();
    let entries = resources
        .into_iter()
        .map(|(id, resource)| Entry::new(&base, kind, id, resource, Mode::Match))
        .collect();
    searchset_page(&base, kind, &params, entries, None)
}

/// The answer to a search of `kind` under `base` asked with `params`: a
/// `searchset` Bundle of `entries`, with a `next` link carrying `cursor`
/// when another page follows.
pub(crate) fn searchset_page(
    base: &str,
    kind: &str,
    params: &[(String, String)],
    entries: Vec<Entry>,
    cursor: Option<&str>,
) -> HttpResponse {
    let search_url = format!("{base}/{kind}");
    let next_url = cursor.map(|c| bundle::with_cursor(&search_url, params, c));
    let body = bundle::searchset(
        &bundle::self_link(&search_url, params),
        next_url.as_deref(),
        entries,
    );
    fhir_json(StatusCode::OK, &body)
}

/// The server's capabilities.
#[utoipa::path(get, operation_id = "fhir_metadata", path = "/fhir/R4/metadata", tag = "fhir",
    responses((status = 200, description = "the CapabilityStatement", body = Resource, content_type = "application/fhir+json")))]
pub async fn metadata(req: HttpRequest, state: State) -> HttpResponse {
    let statement =
        capability::statement(&base(&req, &state), env!("CARGO_PKG_VERSION"), "2026-12-06");
    fhir_json(StatusCode::OK, &statement)
}

/// The SMART on FHIR configuration.
#[utoipa::path(get, operation_id = "fhir_smart_configuration", path = "/fhir/R4/.well-known/smart-configuration", tag = "fhir",
    responses((status = 200, description = "the SMART configuration", body = Object, content_type = "application/json")))]
pub async fn smart_configuration(req: HttpRequest, state: State) -> HttpResponse {
    HttpResponse::Ok().json(capability::smart_configuration(
        &crate::routes::backend::token_url(&req, &state),
        state.oidc_issuer.as_deref(),
    ))
}
