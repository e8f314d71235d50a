//! Calendar feeds: a practitioner makes a revocable feed token for their
//! own schedule; calendar clients fetch `GET /api/v1/calendar.ics?token=…`
//! (the token is the credential: clients cannot send headers). Events show
//! what the organization's `calendar_detail` allows: by default times and
//! "Appointment" only.

use actix_web::{HttpResponse, web};
use carapace_audit::{Access, ActorKind};
use carapace_clinical::appointment::Slot;
use carapace_clinical::appointment::calendar::{
    CalendarFeedRepository as _, FeedEvent, FeedId, FeedInfo,
};
use carapace_tenancy::{OrganizationRepository as _, SubjectId, TenantContext};
use icalendar::{Calendar, Component as _, Event, EventLike as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::{ApiError, Reply};
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/calendar-feeds")
            .wrap(actix_web::middleware::from_fn(
                crate::http::idempotency::credential_middleware,
            ))
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/calendar-feeds/{id}").route(web::delete().to(revoke)))
    // A bearer of nothing but a token in the URL: charged per client
    // address, like the other routes that take a secret without
    // credentials, whatever spelling of the path reached it.
    .service(
        web::resource("/calendar.ics")
            .wrap(actix_web::middleware::from_fn(
                crate::http::limits::charge_client,
            ))
            .route(web::get().to(feed)),
    );
}

/// How far back and ahead a feed reaches.
const PAST: Duration = Duration::days(30);
const AHEAD: Duration = Duration::days(180);

/// A feed (the token only when it is made).
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedView {
    id: Uuid,
    practitioner: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
    /// Shown once: the path to subscribe to, token included.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

fn view(f: &FeedInfo, token: Option<&SecretString>) -> FeedView {
    FeedView {
        id: f.id.as_uuid(),
        practitioner: f.practitioner.as_str().to_owned(),
        created_at: f.created_at.format(&Rfc3339).unwrap_or_default(),
        revoked_at: f.revoked_at.map(|t| t.format(&Rfc3339).unwrap_or_default()),
        url: token.map(|t| format!("/api/v1/calendar.ics?token={}", t.expose_secret())),
    }
}

/// Makes a feed of the caller's own schedule; the URL is shown once.
#[utoipa::path(post, operation_id = "calendar_create", path = "/api/v1/calendar-feeds", tag = "appointments",
    responses((status = 201, body = FeedView)))]
pub async fn create(auth: Authorized, state: State) -> Reply {
    let (token, hash) = carapace_auth::feed_tokens::generate(auth.principal.org());
    let made = state
        .calendar
        .create(&auth.access(), auth.principal.subject(), hash)
        .await?;
    Ok(HttpResponse::Created().json(view(&made, Some(&token))))
}

/// The caller's feeds.
#[utoipa::path(get, operation_id = "calendar_list", path = "/api/v1/calendar-feeds", tag = "appointments",
    responses((status = 200, body = [FeedView])))]
pub async fn list(auth: Authorized, state: State) -> Reply {
    let feeds = state
        .calendar
        .list(&auth.access(), auth.principal.subject())
        .await?;
    let views: Vec<FeedView> = feeds.iter().map(|f| view(f, None)).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Revokes one of the caller's feeds: its URL stops working at once.
#[utoipa::path(delete, operation_id = "calendar_revoke", path = "/api/v1/calendar-feeds/{id}", tag = "appointments",
    params(("id" = Uuid, Path, description = "feed id")),
    responses((status = 204, description = "revoked")))]
pub async fn revoke(auth: Authorized, state: State, id: web::Path<FeedId>) -> Reply {
    if state
        .calendar
        .revoke(&auth.access(), auth.principal.subject(), id.into_inner())
        .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

/// The feed's token.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// The feed token from `POST /api/v1/calendar-feeds`.
    token: String,
}

/// An iCalendar feed of one practitioner's booked appointments (30 days
/// back, 180 ahead). Unknown or revoked token: 404.
#[utoipa::path(get, operation_id = "calendar_feed", path = "/api/v1/calendar.ics", tag = "appointments", params(FeedParams),
    responses(
        (status = 200, description = "text/calendar", content_type = "text/calendar", body = String),
    ))]
pub async fn feed(
    req: actix_web::HttpRequest,
    state: State,
    params: web::Query<FeedParams>,
) -> Reply {
    let token = SecretString::from(params.into_inner().token);
    let (org, hash) = carapace_auth::feed_tokens::parse(&token).ok_or(ApiError::NotFound)?;
    let reader = SubjectId::parse("system:calendar-feed")
        .map_err(|_| ApiError::Internal("static subject".into()))?;
    let ctx = TenantContext::new(org, reader);
    let Some(found) = state.calendar.resolve(&ctx, hash).await? else {
        return Err(ApiError::NotFound);
    };
    let settings = state
        .orgs
        .find_by_id(org)
        .await?
        .ok_or(ApiError::NotFound)?
        .settings;
    // The feed reads as its practitioner, through the token.
    let access = Access::new(
        TenantContext::new(org, found.practitioner.clone()),
        ActorKind::User,
        crate::http::auth::origin(&req),
    );
    let now = OffsetDateTime::now_utc();
    let window = Slot::new(now - PAST, now + AHEAD)
        .ok_or_else(|| ApiError::Internal("empty window".into()))?;
    let events = state
        .calendar
        .events(&access, &found, window, settings.calendar_detail)
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .body(ics(&events)))
}

/// The events as an iCalendar document (DTSTAMP is the time of writing).
fn ics(events: &[FeedEvent]) -> String {
    let mut calendar = Calendar::new();
    calendar.name("Appointments");
    for e in events {
        calendar.push(
            Event::new()
                .uid(&e.uid)
                .starts(e.slot.start())
                .ends(e.slot.end())
                .summary(&e.summary)
                .done(),
        );
    }
    calendar.done().to_string()
}
