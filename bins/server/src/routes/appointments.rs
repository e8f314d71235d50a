//! `/api/v1/appointments`: book, read, list, reschedule, cancel, complete,
//! mark no-show; a practitioner's free slots; a patient's reminder
//! preferences. Access follows the patient: whoever may reach the patient
//! (care team, org-wide role, own record) may reach their appointments.

mod dto;

pub use dto::{
    AppointmentList, AppointmentView, BookAppointment, FreeSlot, FreeSlots, ReminderPreferences,
    Reschedule,
};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use carapace_auth::policy::Permission;
use carapace_clinical::FieldError;
use carapace_clinical::appointment::{
    AppointmentId, AppointmentRepository as _, AppointmentStatus, CURSOR_SCOPE, Channel,
    FreeSlotsInput, ListingRequest, instant_field, practitioner_field,
};
use carapace_clinical::patient::PatientId;
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::patients::related;
use crate::routes::problems;
use crate::routes::use_cases::{caller, scheduling};
use crate::state::{AppState, State};

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/appointments")
            .route(web::post().to(book))
            .route(web::get().to(list)),
    )
    .service(web::resource("/appointments/{id}").route(web::get().to(get)))
    .service(web::resource("/appointments/{id}/reschedule").route(web::post().to(reschedule)))
    .service(web::resource("/appointments/{id}/cancel").route(web::post().to(cancel)))
    .service(web::resource("/appointments/{id}/complete").route(web::post().to(complete)))
    .service(web::resource("/appointments/{id}/no-show").route(web::post().to(no_show)))
    .service(web::resource("/practitioners/{subject}/free-slots").route(web::get().to(free)))
    .service(
        web::resource("/patients/{id}/reminder-preferences")
            .route(web::get().to(preferences))
            .route(web::put().to(set_preferences)),
    );
}

/// Books an appointment with a member of the patient's care team; its
/// reminders are scheduled with it. An overlap with the practitioner's or
/// the patient's booked appointments is 409 `slot_taken`.
#[utoipa::path(post, operation_id = "appointments_book", path = "/api/v1/appointments", tag = "appointments", request_body = BookAppointment,
    responses(
        (status = 201, body = AppointmentView),
        problems::NoSuchPatient,
        (status = 409, description = "slot_taken", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn book(auth: Authorized, state: State, body: JsonBody<BookAppointment>) -> Reply {
    let now = OffsetDateTime::now_utc();
    let new = body.0.into_input().parse(&state.booking_rules, now)?;
    let booked = scheduling(&state)
        .book(&caller(&auth), &new, &state.reminder_offsets, now)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/appointments/{}", booked.id),
        ))
        .json(AppointmentView::from(&booked)))
}

/// Reads an appointment.
#[utoipa::path(get, operation_id = "appointments_get", path = "/api/v1/appointments/{id}", tag = "appointments",
    params(("id" = Uuid, Path, description = "appointment id")),
    responses(
        (status = 200, body = AppointmentView),
    ))]
pub async fn get(auth: Authorized, state: State, id: web::Path<AppointmentId>) -> Reply {
    let id = id.into_inner();
    let found = scheduling(&state)
        .read(&caller(&auth), id, OffsetDateTime::now_utc())
        .await?;
    Ok(HttpResponse::Ok().json(AppointmentView::from(&found)))
}

/// Moves a booked appointment; its pending reminders move with it.
#[utoipa::path(post, operation_id = "appointments_reschedule", path = "/api/v1/appointments/{id}/reschedule", tag = "appointments", request_body = Reschedule,
    params(("id" = Uuid, Path, description = "appointment id")),
    responses(
        (status = 200, body = AppointmentView),
        (status = 409, description = "slot_taken or invalid_transition", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reschedule(
    auth: Authorized,
    state: State,
    id: web::Path<AppointmentId>,
    body: JsonBody<Reschedule>,
) -> Reply {
    let now = OffsetDateTime::now_utc();
    let mut errors = Vec::new();
    let start = instant_field("start", &body.0.start)
        .map_err(|e| errors.push(e))
        .ok();
    let end = instant_field("end", &body.0.end)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(start), Some(end)) = (start, end) else {
        return Err(ApiError::Invalid(errors));
    };
    let slot = state
        .booking_rules
        .slot(start, end, now)
        .map_err(ApiError::Invalid)?;
    let moved = scheduling(&state)
        .reschedule(
            &caller(&auth),
            id.into_inner(),
            slot,
            &state.reminder_offsets,
            now,
        )
        .await?;
    Ok(HttpResponse::Ok().json(AppointmentView::from(&moved)))
}

async fn finish(auth: Authorized, state: State, id: Uuid, to: AppointmentStatus) -> Reply {
    let done = scheduling(&state)
        .finish(
            &caller(&auth),
            AppointmentId::from_uuid(id),
            to,
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(AppointmentView::from(&done)))
}

/// Cancels a booked appointment (its slot is free again; pending
/// reminders are dropped).
#[utoipa::path(post, operation_id = "appointments_cancel", path = "/api/v1/appointments/{id}/cancel", tag = "appointments",
    params(("id" = Uuid, Path, description = "appointment id")),
    responses(
        (status = 200, body = AppointmentView),
        problems::InvalidTransition,
    ))]
pub async fn cancel(auth: Authorized, state: State, id: web::Path<Uuid>) -> Reply {
    finish(auth, state, id.into_inner(), AppointmentStatus::Cancelled).await
}

/// Marks a booked appointment that has started as completed.
#[utoipa::path(post, operation_id = "appointments_complete", path = "/api/v1/appointments/{id}/complete", tag = "appointments",
    params(("id" = Uuid, Path, description = "appointment id")),
    responses(
        (status = 200, body = AppointmentView),
        problems::NotStarted,
    ))]
pub async fn complete(auth: Authorized, state: State, id: web::Path<Uuid>) -> Reply {
    finish(auth, state, id.into_inner(), AppointmentStatus::Completed).await
}

/// Marks a booked appointment that has started as a no-show.
#[utoipa::path(post, operation_id = "appointments_no_show", path = "/api/v1/appointments/{id}/no-show", tag = "appointments",
    params(("id" = Uuid, Path, description = "appointment id")),
    responses(
        (status = 200, body = AppointmentView),
        problems::NotStarted,
    ))]
pub async fn no_show(auth: Authorized, state: State, id: web::Path<Uuid>) -> Reply {
    finish(auth, state, id.into_inner(), AppointmentStatus::NoShow).await
}

/// Listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// One patient's appointments.
    patient_id: Option<Uuid>,
    /// One practitioner's schedule (their own, or any for org-wide roles).
    practitioner: Option<String>,
    /// Only those starting at or after this RFC 3339 instant.
    from: Option<String>,
    /// Only those starting before this RFC 3339 instant.
    to: Option<String>,
    /// Page size, 1-100 (default 50).
    limit: Option<String>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// Lists appointments by start: one patient's (`patient_id`), one
/// practitioner's (`practitioner`), or by default the organization's
/// (org-wide roles) or the caller's own schedule (clinicians); `from`/`to`
/// bound the day range.
#[utoipa::path(get, operation_id = "appointments_list", path = "/api/v1/appointments", tag = "appointments",
    params(ListParams),
    responses(
        (status = 200, body = AppointmentList),
        problems::BadCursor,
    ))]
pub async fn list(auth: Authorized, state: State, params: web::Query<ListParams>) -> Reply {
    let p = params.into_inner();
    let ctx = auth.principal.tenant();
    let mut errors = Vec::new();
    let from = p
        .from
        .as_deref()
        .map(|f| instant_field("from", f))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let to =
        p.to.as_deref()
            .map(|t| instant_field("to", t))
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        errors.push(FieldError::new("to", "must be after from"));
    }
    let practitioner = p
        .practitioner
        .as_deref()
        .map(practitioner_field)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if p.patient_id.is_some() && practitioner.is_some() {
        errors.push(FieldError::new(
            "practitioner",
            "give patient_id or practitioner, not both",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let after = open_position(&state, ctx.org(), p.cursor.as_deref())?;
    let request = ListingRequest {
        patient: p.patient_id.map(PatientId::from_uuid),
        practitioner,
        from,
        to,
        limit: p.limit,
        after,
        status: None,
    };
    let page = scheduling(&state)
        .list(&caller(&auth), request, OffsetDateTime::now_utc())
        .await?;
    let next_cursor = page
        .next_after
        .map(|position| seal_position(&state, ctx.org(), position));
    Ok(HttpResponse::Ok().json(AppointmentList {
        items: page.items.iter().map(AppointmentView::from).collect(),
        next_cursor,
    }))
}

/// A listing position (start, id) as a sealed, organization-bound cursor.
pub(crate) fn seal_position(
    state: &AppState,
    org: carapace_tenancy::OrgId,
    (start, id): (OffsetDateTime, AppointmentId),
) -> String {
    let mut position = start.unix_timestamp().to_be_bytes().to_vec();
    position.extend_from_slice(id.as_uuid().as_bytes());
    state.cursor_key.seal(org, CURSOR_SCOPE, &position)
}

/// The listing position a cursor of [`seal_position`] holds (400 for a
/// forged or foreign one).
pub(crate) fn open_position(
    state: &AppState,
    org: carapace_tenancy::OrgId,
    cursor: Option<&str>,
) -> Result<Option<(OffsetDateTime, AppointmentId)>, ApiError> {
    crate::http::extract::open_cursor(&state.cursor_key, org, CURSOR_SCOPE, cursor, |position| {
        let (secs, id) = position.split_at_checked(8)?;
        let start =
            OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(secs.try_into().ok()?)).ok()?;
        Some((start, AppointmentId::from_uuid(Uuid::from_slice(id).ok()?)))
    })
}

/// Free-slot parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FreeSlotParams {
    /// The day, `YYYY-MM-DD`, in `time_zone`.
    date: String,
    /// IANA zone of the working hours.
    time_zone: String,
    /// Start of working hours, `HH:MM` (default 09:00).
    from: Option<String>,
    /// End of working hours, `HH:MM` (default 17:00).
    to: Option<String>,
    /// Slot length in minutes (default 30).
    length: Option<u32>,
    /// Minutes between candidate starts (default the length).
    step: Option<u32>,
}

/// The practitioner's free slots of one day within working hours: times
/// only, for booking.
#[utoipa::path(get, operation_id = "appointments_free", path = "/api/v1/practitioners/{subject}/free-slots", tag = "appointments",
    params(("subject" = String, Path, description = "the practitioner"), FreeSlotParams),
    responses(
        (status = 200, body = FreeSlots),
    ))]
pub async fn free(
    auth: Authorized,
    state: State,
    subject: web::Path<String>,
    params: web::Query<FreeSlotParams>,
) -> Reply {
    let p = params.into_inner();
    let query = FreeSlotsInput {
        practitioner: subject.into_inner(),
        date: p.date,
        time_zone: p.time_zone,
        from: p.from,
        to: p.to,
        length: p.length,
        step: p.step,
    }
    .parse(&state.booking_rules)?;
    let slots = scheduling(&state)
        .free_slots(
            &caller(&auth),
            &query.practitioner,
            query.hours,
            query.length,
            query.step,
            OffsetDateTime::now_utc(),
        )
        .await?
        .iter()
        .map(|s| FreeSlot::new(s, &query.zone))
        .collect();
    Ok(HttpResponse::Ok().json(FreeSlots { slots }))
}

/// Whether the patient gets reminders by e-mail and by SMS.
#[utoipa::path(get, operation_id = "appointments_preferences", path = "/api/v1/patients/{id}/reminder-preferences", tag = "appointments",
    params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 200, body = ReminderPreferences),
    ))]
pub async fn preferences(auth: Authorized, state: State, id: web::Path<PatientId>) -> Reply {
    let patient = id.into_inner();
    let access = related(&state, &auth, patient, Permission::AppointmentRead).await?;
    let off = state
        .appointments
        .opt_outs(&access, patient)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ReminderPreferences {
        email: !off.contains(&Channel::Email),
        sms: !off.contains(&Channel::Sms),
        voice: Some(!off.contains(&Channel::Voice)),
    }))
}

/// Turns reminders on or off per channel (a patient for their own record,
/// or staff for them).
#[utoipa::path(put, operation_id = "appointments_set_preferences", path = "/api/v1/patients/{id}/reminder-preferences", tag = "appointments", request_body = ReminderPreferences,
    params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 200, body = ReminderPreferences),
    ))]
pub async fn set_preferences(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: JsonBody<ReminderPreferences>,
) -> Reply {
    let patient = id.into_inner();
    let access = related(&state, &auth, patient, Permission::AppointmentWrite).await?;
    let wanted = body.0;
    // A channel left out of the body keeps its setting.
    let mut choices = vec![(Channel::Email, wanted.email), (Channel::Sms, wanted.sms)];
    if let Some(voice) = wanted.voice {
        choices.push((Channel::Voice, voice));
    }
    if !state
        .appointments
        .set_opt_outs(&access, patient, &choices)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    Ok(HttpResponse::Ok().json(wanted))
}
