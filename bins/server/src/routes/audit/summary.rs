//! The trail at a glance: events per day by outcome
//! (`/api/v1/audit-events/daily`) and the chain's verification state
//! (`/api/v1/audit-chain`). Both reads are recorded.

use actix_web::{HttpResponse, web};
use carapace_audit::Outcome;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, Time};
use utoipa::{IntoParams, ToSchema};

use super::{invalid, time};
use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::{ApiError, Reply};
use crate::state::State;

/// The longest range of days one request counts.
const MAX_DAYS: i64 = 366;

/// The range to count.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyParams {
    /// From this time (RFC 3339, inclusive; default 30 days before `to`).
    from: Option<String>,
    /// Before this time (RFC 3339; default the end of today, UTC). At most 366 days after `from`.
    to: Option<String>,
}

/// One day's events by outcome.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct DayView {
    /// The day (UTC), `YYYY-MM-DD`.
    day: String,
    /// Events allowed.
    allowed: u64,
    /// Events denied.
    denied: u64,
    /// Events about something that was not found.
    not_found: u64,
    /// Events that failed.
    error: u64,
}

/// Events per day, only days with events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyView {
    /// The days.
    days: Vec<DayView>,
}

/// The organization's audit events per UTC day and outcome, for charts.
/// The read is recorded (`audit.read`).
#[utoipa::path(get, operation_id = "audit_daily", path = "/api/v1/audit-events/daily", tag = "audit",
    params(DailyParams),
    responses(
        (status = 200, body = DailyView),
    ))]
pub async fn daily(auth: Authorized, state: State, params: web::Query<DailyParams>) -> Reply {
    let p = params.into_inner();
    let to = match time("to", p.to.as_deref())? {
        Some(to) => to,
        None => OffsetDateTime::now_utc().replace_time(Time::MIDNIGHT) + Duration::days(1),
    };
    let from = time("from", p.from.as_deref())?.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(invalid("from", "must be before to"));
    }
    if to - from > Duration::days(MAX_DAYS) {
        return Err(invalid("to", "must be at most 366 days after from"));
    }
    let read = auth
        .access()
        .event("audit.read", "audit_log", None, Outcome::Allowed)
        .with_detail(format!(
            "daily counts: from={} to={}",
            from.format(&Rfc3339).unwrap_or_default(),
            to.format(&Rfc3339).unwrap_or_default()
        ));
    let counts = state
        .audit
        .daily_counts(&auth.access(), from, to, read)
        .await?;
    let mut days: Vec<DayView> = Vec::new();
    for c in counts {
        let day = c.day.to_string();
        if days.last().is_none_or(|d| d.day != day) {
            days.push(DayView {
                day,
                ..DayView::default()
            });
        }
        if let Some(d) = days.last_mut() {
            match c.outcome {
                Outcome::Allowed => d.allowed += c.count,
                Outcome::Denied => d.denied += c.count,
                Outcome::NotFound => d.not_found += c.count,
                Outcome::Error => d.error += c.count,
            }
        }
    }
    Ok(HttpResponse::Ok().json(DailyView { days }))
}

/// What is wrong with the chain, at its first bad position.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingView {
    /// The first bad position.
    position: u64,
    /// What is wrong there.
    problem: String,
}

/// The organization's audit chain, verified now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainView {
    /// `verified` or `broken`.
    state: &'static str,
    /// Positions checked (when verified).
    entries: u64,
    /// The last position (when verified).
    head: u64,
    /// Signed checkpoints matched against the chain (when verified).
    checkpoints: u64,
    /// Events recorded and not chained yet.
    pending: u64,
    /// The first thing wrong (when broken).
    finding: Option<FindingView>,
    /// When it was verified (RFC 3339).
    verified_at: String,
}

/// Verifies the organization's audit chain against its signed
/// checkpoints, as `carapace audit verify` does for one organization (the
/// off-site witness is compared by the CLI only). An organization's
/// verifications run one at a time, and an instance runs a few at most
/// (`crate::state::verifications`); another meanwhile is 429. The result
/// is recorded (`audit.verify`) before it is answered.
#[utoipa::path(get, operation_id = "audit_chain", path = "/api/v1/audit-chain", tag = "audit",
    responses(
        (status = 200, body = ChainView),
        (status = 429, description = "the organization's verification, or as many as the instance runs, under way", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn chain(auth: Authorized, state: State) -> Reply {
    let org = auth.principal.org();
    let Some(_running) = state.verifying.start(org) else {
        return Err(ApiError::RateLimited(std::time::Duration::from_secs(5)));
    };
    let v = carapace_infra::audit::verify_org(&state.db, org, &state.audit_key).await?;
    // The verdict is recorded before it is answered.
    let (outcome, detail) = match &v.chain {
        Ok(ok) => (
            Outcome::Allowed,
            format!("verified: head {} checkpoints {}", ok.head, ok.checkpoints),
        ),
        Err(f) => (
            Outcome::Error,
            format!("broken at {}: {}", f.position, f.problem),
        ),
    };
    let event = auth
        .access()
        .event("audit.verify", "audit_log", None, outcome)
        .with_detail(detail);
    state.audit.record(&event).await?;
    let verified = v.chain.as_ref().ok();
    Ok(HttpResponse::Ok().json(ChainView {
        state: if verified.is_some() {
            "verified"
        } else {
            "broken"
        },
        entries: verified.map_or(0, |ok| ok.entries),
        head: verified.map_or(0, |ok| ok.head),
        checkpoints: verified.map_or(0, |ok| ok.checkpoints),
        pending: v.pending,
        finding: v.chain.as_ref().err().map(|f| FindingView {
            position: f.position,
            problem: f.problem.to_string(),
        }),
        verified_at: event.at.format(&Rfc3339).unwrap_or_default(),
    }))
}
