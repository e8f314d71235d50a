//! `Appointment`: read, search (`_include=Appointment:patient`), create
//! (booking) and update (a status transition or a new time), through the appointment use cases
//! ([`carapace_clinical::appointment::Scheduling`]) that
//! `/api/v1/appointments` calls: the same care-team rule, the same
//! database conflict rule (409 on a taken slot), the same audit events.

use std::collections::BTreeSet;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use carapace_clinical::appointment::{AppointmentId, AppointmentStatus, ListingRequest};
use carapace_clinical::patient::PatientId;
use carapace_clinical::{ClinicalError, FieldError};
use time::{Duration, OffsetDateTime};

use super::{
    PAGING, Paging, Params, Resource, Search, Searchset, Versioned, at_version, bad, base,
    date_param, named, patient_ref, read_id, searchset_page, versioned,
};
use crate::fhir::appointment::{element_of, from_fhir, status_of, to_fhir, version};
use crate::fhir::bundle::{Entry, Mode};
use crate::fhir::capability::{APPOINTMENT_SEARCH, QUERY_PARAMS_MAX, SearchParam};
use crate::http::auth::Authorized;
use crate::http::extract::FhirBody;
use crate::http::{ApiError, Reply};
use crate::routes::appointments::{open_position, seal_position};
use crate::routes::use_cases::{caller, patient_access, scheduling};
use crate::state::State;

/// Registers the `Appointment` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/Appointment")
            .route(web::get().to(search))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/Appointment/{id}")
            .route(web::get().to(read))
            .route(web::put().to(update)),
    )
    .service(web::resource("/Appointment/{id}/_history/{vid}").route(web::get().to(vread)));
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// An appointment as a FHIR answer: its JSON and `ETag`.
fn answer(
    status: StatusCode,
    a: &carapace_clinical::appointment::Appointment,
    base: &str,
) -> HttpResponse {
    let it = Versioned {
        kind: "Appointment",
        id: &a.id,
        version: &version(a),
        modified: None,
    };
    versioned(status, &to_fhir(a), base, &it)
}

/// Reads an appointment (through its patient: `appointment.read`).
#[utoipa::path(get, operation_id = "fhir_appointment_read", path = "/fhir/R4/Appointment/{id}", tag = "fhir",
    params(("id" = String, Path, description = "appointment id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Appointment")))]
pub async fn read(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Reply {
    let id = read_id(&id, AppointmentId::from_uuid)?;
    let found = scheduling(&state).read(&caller(&auth), id, now()).await?;
    Ok(answer(StatusCode::OK, &found, &base(&req, &state)))
}

/// Reads an appointment at a version: only the current one is kept, any
/// other is 404.
#[utoipa::path(get, operation_id = "fhir_appointment_vread", path = "/fhir/R4/Appointment/{id}/_history/{vid}", tag = "fhir",
    params(("id" = String, Path, description = "appointment id"), ("vid" = String, Path, description = "versionId")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Appointment at that version")))]
pub async fn vread(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Reply {
    let (id, vid) = path.into_inner();
    let id = read_id(&id, AppointmentId::from_uuid)?;
    let found = scheduling(&state).read(&caller(&auth), id, now()).await?;
    at_version(version(&found), &vid)?;
    Ok(answer(StatusCode::OK, &found, &base(&req, &state)))
}

/// Books an appointment with a member of the patient's care team (409 when
/// the slot is taken).
#[utoipa::path(post, operation_id = "fhir_appointment_create", path = "/fhir/R4/Appointment", tag = "fhir",
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 201, body = Resource, content_type = "application/fhir+json", description = "booked"),
              (status = 409, body = super::OperationOutcome, content_type = "application/fhir+json", description = "the slot is taken")))]
pub async fn create(auth: Authorized, state: State, req: HttpRequest, body: FhirBody) -> Reply {
    let at = now();
    let new = from_fhir(&body.0)
        .and_then(|(input, status)| {
            if status == AppointmentStatus::Booked {
                input.parse(&state.booking_rules, at)
            } else {
                Err(ClinicalError::Invalid(vec![FieldError::new(
                    "Appointment.status",
                    "a new appointment is \"booked\"",
                )]))
            }
        })
        .map_err(|e| named(e, element_of))?;
    let booked = scheduling(&state)
        .book(&caller(&auth), &new, &state.reminder_offsets, at)
        .await
        .map_err(|e| named(e, element_of))?;
    Ok(answer(StatusCode::CREATED, &booked, &base(&req, &state)))
}

/// Changes an appointment: its status (`cancelled`, `fulfilled`,
/// `noshow`: the REST cancel, complete and no-show) or its time (the REST
/// reschedule), through the same use cases; everything else stays as it
/// is (422 naming the element otherwise). A body that changes nothing
/// writes nothing.
#[utoipa::path(put, operation_id = "fhir_appointment_update", path = "/fhir/R4/Appointment/{id}", tag = "fhir",
    params(("id" = String, Path, description = "appointment id")),
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the appointment as it now is"),
              (status = 409, body = super::OperationOutcome, content_type = "application/fhir+json", description = "the slot is taken, or the status cannot change so")))]
pub async fn update(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    body: FhirBody,
) -> Reply {
    let id = read_id(&id, AppointmentId::from_uuid)?;
    if req.headers().contains_key(header::IF_MATCH) {
        return Err(ApiError::Unprocessable {
            code: "if_match_not_supported",
            detail: "an appointment changes by status transitions the server checks; send no If-Match",
        });
    }
    if body
        .0
        .get("id")
        .is_some_and(|v| v.as_str() != Some(&id.to_string()))
    {
        return Err(bad("Appointment.id", "must be the id in the URL"));
    }
    let (input, status) = from_fhir(&body.0)?;
    let changed = scheduling(&state)
        .replace(
            &caller(&auth),
            id,
            &input,
            status,
            &state.booking_rules,
            &state.reminder_offsets,
            now(),
        )
        .await
        .map_err(|e| named(e, replaced_element))?;
    Ok(answer(StatusCode::OK, &changed, &base(&req, &state)))
}

/// The FHIR element of a field a replacement names (the reason as a
/// whole: it does not change).
fn replaced_element(field: &str) -> String {
    match field {
        "reason" => "Appointment.reasonCode".into(),
        other => element_of(other),
    }
}

/// `_include=Appointment:patient` (the one include; it may repeat).
const INCLUDE: &[SearchParam] = &[SearchParam {
    name: "_include",
    kind: "special",
    most: QUERY_PARAMS_MAX,
    doc: "Appointment:patient",
}];

/// One `date` bound into `request` (starts are whole seconds).
fn date_bound(value: &str, request: &mut ListingRequest) -> Result<(), ApiError> {
    let (from, to) = date_param("date", value, Duration::seconds(1))?;
    if let Some(f) = from {
        request.from = Some(request.from.map_or(f, |cur| cur.max(f)));
    }
    if let Some(t) = to {
        request.to = Some(request.to.map_or(t, |cur| cur.min(t)));
    }
    Ok(())
}

/// Searches appointments: `patient`, `practitioner`, `date`, `status`,
/// `_count`, `_include=Appointment:patient`; a `searchset` with `next`.
#[utoipa::path(get, operation_id = "fhir_appointment_search", path = "/fhir/R4/Appointment", tag = "fhir",
    params(("patient" = Option<String>, Query, description = "Patient/<id>"),
           ("practitioner" = Option<String>, Query, description = "the practitioner's subject"),
           ("date" = Option<String>, Query, description = "eq, ge, gt, le or lt a date or instant (repeatable)"),
           ("status" = Option<String>, Query, description = "booked, fulfilled, cancelled or noshow"),
           ("_include" = Option<String>, Query, description = "Appointment:patient"),
           Paging),
    responses(Searchset))]
pub async fn search(auth: Authorized, state: State, search: Search) -> Reply {
    let Search { params, base } = search;
    let ctx = auth.principal.tenant();
    let p = Params::check(
        &params,
        "the Appointment search",
        &[APPOINTMENT_SEARCH, PAGING, INCLUDE],
    )?;
    let mut request = ListingRequest {
        patient: p
            .one("patient")
            .map(|v| patient_ref("patient", v))
            .transpose()?,
        practitioner: p
            .one("practitioner")
            .map(|v| {
                let raw = v.strip_prefix("Practitioner/").unwrap_or(v);
                carapace_clinical::appointment::practitioner_field(raw)
                    .map_err(|e| bad("practitioner", &e.message))
            })
            .transpose()?,
        status: p
            .one("status")
            .map(|v| {
                status_of(v).ok_or_else(|| bad("status", "booked, fulfilled, cancelled or noshow"))
            })
            .transpose()?,
        limit: p.one("_count").map(str::to_owned),
        ..ListingRequest::default()
    };
    for value in p.all("date") {
        date_bound(value, &mut request)?;
    }
    if p.all("_include").any(|v| v != "Appointment:patient") {
        return Err(bad("_include", "only Appointment:patient is supported"));
    }
    let include_patients = p.one("_include").is_some();
    if request.patient.is_some() && request.practitioner.is_some() {
        return Err(bad(
            "practitioner",
            "give patient or practitioner, not both",
        ));
    }
    if let (Some(f), Some(t)) = (request.from, request.to)
        && t <= f
    {
        // An empty range matches nothing.
        return Ok(searchset_page(
            &base,
            "Appointment",
            &params,
            Vec::new(),
            None,
        ));
    }
    request.after = open_position(&state, ctx.org(), p.one("_cursor"))?;
    let page = scheduling(&state)
        .list(&caller(&auth), request, now())
        .await?;
    let mut entries: Vec<Entry> = page
        .items
        .iter()
        .map(|a| Entry::new(&base, "Appointment", a.id, to_fhir(a), Mode::Match))
        .collect();
    if include_patients {
        let patients: BTreeSet<PatientId> = page.items.iter().map(|a| a.patient).collect();
        for id in patients {
            // Each included patient is a patient read: its decision, its
            // audit event; one the caller may not read is left out.
            match patient_access(&state).read(&caller(&auth), id, now()).await {
                Ok(p) => entries.push(Entry::new(
                    &base,
                    "Patient",
                    p.id,
                    crate::fhir::patient::to_fhir(&p),
                    Mode::Include,
                )),
                Err(ClinicalError::NotFound | ClinicalError::Denied(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let cursor = page
        .next_after
        .map(|position| seal_position(&state, ctx.org(), position));
    Ok(searchset_page(
        &base,
        "Appointment",
        &params,
        entries,
        cursor.as_deref(),
    ))
}
