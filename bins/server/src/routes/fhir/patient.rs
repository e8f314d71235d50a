//! `Patient`: read, search, create, update (versioned) and delete, through
//! the patient-access use cases ([`carapace_clinical::access::PatientAccess`])
//! that `/api/v1/patients` calls: the same permissions, relationships, MFA
//! rules, encryption and audit events.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use carapace_clinical::patient::{
    CURSOR_SCOPE, PageLimit, Patient, PatientId, PatientPatch, PatientQuery, UpdatedWithin,
    Version, Visibility, member_id_filter, name_dob_filter,
};
use carapace_clinical::{ClinicalError, FieldError};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    PAGING, Paging, Params, Resource, Search, Searchset, Versioned, at_version, bad, base,
    date_param, read_id, searchset_page, versioned,
};
use crate::fhir::bundle::{Entry, Mode};
use crate::fhir::capability::PATIENT_SEARCH;
use crate::fhir::if_match_version;
use crate::fhir::patient::{MEMBER_ID_SYSTEM, from_fhir, to_fhir};
use crate::http::auth::Authorized;
use crate::http::extract::FhirBody;
use crate::http::{ApiError, Reply};
use crate::routes::use_cases::{caller, patient_access};
use crate::state::State;

/// Registers the `Patient` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/Patient")
            .route(web::get().to(search))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/Patient/{id}")
            .route(web::get().to(read))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/Patient/{id}/_history/{vid}").route(web::get().to(vread)));
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A patient as a FHIR answer: its JSON, `ETag` and `Last-Modified`.
fn answer(status: StatusCode, patient: &Patient, base: &str) -> HttpResponse {
    let it = Versioned {
        kind: "Patient",
        id: &patient.id,
        version: &patient.version(),
        modified: Some(patient.updated_at),
    };
    versioned(status, &to_fhir(patient), base, &it)
}

/// Reads a patient (the REST read's audit event: `patient.read`).
#[utoipa::path(get, operation_id = "fhir_patient_read", path = "/fhir/R4/Patient/{id}", tag = "fhir",
    params(("id" = String, Path, description = "patient id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Patient, with ETag")))]
pub async fn read(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Reply {
    let id = read_id(&id, PatientId::from_uuid)?;
    let patient = patient_access(&state)
        .read(&caller(&auth), id, now())
        .await?;
    Ok(answer(StatusCode::OK, &patient, &base(&req, &state)))
}

/// Reads a patient at a version: Carapace keeps only the current one, so
/// any other is 404 (the read is the same use case and audit event).
#[utoipa::path(get, operation_id = "fhir_patient_vread", path = "/fhir/R4/Patient/{id}/_history/{vid}", tag = "fhir",
    params(("id" = String, Path, description = "patient id"), ("vid" = String, Path, description = "versionId")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Patient at that version")))]
pub async fn vread(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Reply {
    let (id, vid) = path.into_inner();
    let patient = patient_access(&state)
        .read(&caller(&auth), read_id(&id, PatientId::from_uuid)?, now())
        .await?;
    at_version(patient.version(), &vid)?;
    Ok(answer(StatusCode::OK, &patient, &base(&req, &state)))
}

/// Registers a patient.
#[utoipa::path(post, operation_id = "fhir_patient_create", path = "/fhir/R4/Patient", tag = "fhir",
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 201, body = Resource, content_type = "application/fhir+json", description = "created; Location names its version")))]
pub async fn create(auth: Authorized, state: State, req: HttpRequest, body: FhirBody) -> Reply {
    let demographics = from_fhir(&body.0, None)?.parse(now().date())?;
    let patient = patient_access(&state)
        .register(&caller(&auth), &demographics)
        .await?;
    Ok(answer(StatusCode::CREATED, &patient, &base(&req, &state)))
}

/// Replaces a patient; with `If-Match: W/"<versionId>"` only while it is
/// at that version (else 412, nothing written).
#[utoipa::path(put, operation_id = "fhir_patient_update", path = "/fhir/R4/Patient/{id}", tag = "fhir",
    params(("id" = String, Path, description = "patient id"),
           ("If-Match" = Option<String>, Header, description = "W/\"<versionId>\": update only that version")),
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the new version"),
              (status = 412, body = super::OperationOutcome, content_type = "application/fhir+json", description = "the patient is at another version")))]
pub async fn update(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    body: FhirBody,
) -> Reply {
    let expected = match req.headers().get(header::IF_MATCH) {
        None => None,
        Some(v) => {
            let text = v
                .to_str()
                .ok()
                .and_then(if_match_version)
                .ok_or(ApiError::BadHeader("If-Match must be W/\"<versionId>\""))?;
            // A version this server never writes matches nothing.
            Some(Version::parse(text).ok_or(ApiError::PreconditionFailed)?)
        }
    };
    let raw = id.into_inner();
    let patch = PatientPatch::replacing(from_fhir(&body.0, Some(&raw))?.parse(now().date())?);
    let id = read_id(&raw, PatientId::from_uuid)?;
    let patient = patient_access(&state)
        .update(&caller(&auth), id, &patch, expected, now())
        .await?;
    Ok(answer(StatusCode::OK, &patient, &base(&req, &state)))
}

/// Deletes a patient.
#[utoipa::path(delete, operation_id = "fhir_patient_delete", path = "/fhir/R4/Patient/{id}", tag = "fhir",
    params(("id" = String, Path, description = "patient id")),
    responses((status = 204, description = "deleted")))]
pub async fn delete(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, PatientId::from_uuid)?;
    patient_access(&state)
        .delete(&caller(&auth), id, now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One `_lastUpdated` bound into `within` (changes are kept in µs).
fn last_updated(value: &str, within: &mut UpdatedWithin) -> Result<(), ApiError> {
    let (from, to) = date_param("_lastUpdated", value, time::Duration::microseconds(1))?;
    for (slot, bound) in [
        (&mut within.after, from.map(|f| (f, true))),
        (&mut within.before, to.map(|t| (t, false))),
    ] {
        if let Some(b) = bound {
            if slot.is_some() {
                return Err(bad("_lastUpdated", "one lower and one upper bound at most"));
            }
            *slot = Some(b);
        }
    }
    Ok(())
}

/// Searches patients: `_id`, `identifier`, `family` with `birthdate`,
/// `_lastUpdated`, `_count`; a `searchset` with a `next` link.
#[utoipa::path(get, operation_id = "fhir_patient_search", path = "/fhir/R4/Patient", tag = "fhir",
    params(("_id" = Option<String>, Query, description = "the patient's id"),
           ("identifier" = Option<String>, Query, description = "urn:carapace:member-id|<member id>"),
           ("family" = Option<String>, Query, description = "exact family name, with birthdate"),
           ("birthdate" = Option<String>, Query, description = "YYYY-MM-DD, with family"),
           ("_lastUpdated" = Option<String>, Query, description = "eq, ge, gt, le or lt a date or instant"),
           Paging),
    responses(Searchset))]
pub async fn search(auth: Authorized, state: State, search: Search) -> Reply {
    let Search { params, base } = search;
    let ctx = auth.principal.tenant();
    let mut query = PatientQuery {
        visibility: Visibility::Nothing,
        ..PatientQuery::default()
    };
    let p = Params::check(&params, "the Patient search", &[PATIENT_SEARCH, PAGING])?;
    let (family, birthdate, id) = (p.one("family"), p.one("birthdate"), p.one("_id"));
    // No patient carries an identifier of another system.
    let mut no_match = false;
    if let Some(value) = p.one("identifier") {
        let (system, member) = value
            .split_once('|')
            .map_or((None, value), |(s, m)| (Some(s), m));
        match system {
            None | Some(MEMBER_ID_SYSTEM) => {
                query.member_id =
                    Some(member_id_filter(member).map_err(|e| rename(e, "identifier"))?);
            }
            Some(_) => no_match = true,
        }
    }
    for value in p.all("_lastUpdated") {
        last_updated(value, &mut query.updated)?;
    }
    query.name_dob = match (family, birthdate) {
        (None, None) => None,
        (Some(f), Some(d)) => {
            let d = d.strip_prefix("eq").unwrap_or(d);
            Some(name_dob_filter(f, d, now().date()).map_err(|e| rename(e, "family"))?)
        }
        _ => return Err(bad("family", "family and birthdate are searched together")),
    };
    query.limit = PageLimit::parse_text(p.one("_count")).map_err(|e| rename(e, "_count"))?;
    query.after = crate::http::extract::open_cursor(
        &state.cursor_key,
        ctx.org(),
        CURSOR_SCOPE,
        p.one("_cursor"),
        |b| Uuid::from_slice(b).ok().map(PatientId::from_uuid),
    )?;
    let (items, next) = if no_match {
        (Vec::new(), None)
    } else if let Some(raw) = id {
        // `_id` is a read: the same decision and audit event; a patient
        // the caller may not see is simply not in the result.
        let found = match read_id(raw, PatientId::from_uuid) {
            Err(_) => None,
            Ok(id) => match patient_access(&state).read(&caller(&auth), id, now()).await {
                Ok(p) => Some(p),
                Err(ClinicalError::NotFound | ClinicalError::Denied(_)) => None,
                Err(e) => return Err(e.into()),
            },
        };
        let keep = found.filter(|p| {
            query.member_id.is_none() && query.name_dob.is_none() && within(p, query.updated)
        });
        (keep.into_iter().collect(), None)
    } else {
        let page = patient_access(&state).list(&caller(&auth), query).await?;
        let next = page.next_after.map(|id| {
            state
                .cursor_key
                .seal(ctx.org(), CURSOR_SCOPE, id.as_uuid().as_bytes())
        });
        (page.items, next)
    };
    let entries = items
        .iter()
        .map(|p| Entry::new(&base, "Patient", p.id, to_fhir(p), Mode::Match))
        .collect();
    Ok(searchset_page(
        &base,
        "Patient",
        &params,
        entries,
        next.as_deref(),
    ))
}

/// Whether `p` was last changed within `bounds`.
fn within(p: &Patient, bounds: UpdatedWithin) -> bool {
    let after = bounds
        .after
        .is_none_or(|(t, inclusive)| p.updated_at > t || (inclusive && p.updated_at == t));
    let before = bounds
        .before
        .is_none_or(|(t, inclusive)| p.updated_at < t || (inclusive && p.updated_at == t));
    after && before
}

/// A validation error of a search parameter, named as the client named it.
fn rename(e: ClinicalError, param: &str) -> ApiError {
    match e {
        ClinicalError::Invalid(errors) => ApiError::Invalid(
            errors
                .into_iter()
                .map(|f| FieldError::new(param.to_owned(), f.message))
                .collect(),
        ),
        other => other.into(),
    }
}
