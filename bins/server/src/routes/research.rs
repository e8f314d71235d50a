//! `/api/v1/analytics/research`: de-identified aggregates for compliance
//! and research (counts by age band, medication, side effect and month),
//! every count under 11 withheld; never a row per patient.

use actix_web::{HttpResponse, web};
use carapace_clinical::research::{Cell, ResearchRepository as _, research_summary};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use crate::http::Reply;
use crate::http::auth::Authorized;
use crate::state::State;

/// Registers the route (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/analytics/research").route(web::get().to(summary)));
}

/// A labelled count.
#[derive(Debug, Serialize, ToSchema)]
pub struct CellView {
    label: String,
    /// `null` when withheld (fewer than 11).
    count: Option<u32>,
}

/// The aggregates.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResearchView {
    /// Patients per age band.
    age_bands: Vec<CellView>,
    /// Patients per sex.
    sexes: Vec<CellView>,
    /// Patients per medication.
    medications: Vec<CellView>,
    /// Patients per side effect.
    side_effects: Vec<CellView>,
    /// Appointments (not cancelled) per month, over the last year.
    appointments_per_month: Vec<CellView>,
}

fn view(cells: Vec<Cell>) -> Vec<CellView> {
    cells
        .into_iter()
        .map(|c| CellView {
            label: c.label,
            count: c.count,
        })
        .collect()
}

/// De-identified aggregates of the organization, small cells withheld.
#[utoipa::path(get, operation_id = "research_summary", path = "/api/v1/analytics/research", tag = "medications",
    responses((status = 200, body = ResearchView)))]
pub async fn summary(auth: Authorized, state: State) -> Reply {
    let now = OffsetDateTime::now_utc();
    let cohort = state
        .research
        .cohort(&auth.access(), now - Duration::days(366))
        .await?;
    let s = research_summary(&cohort, now.date());
    Ok(HttpResponse::Ok().json(ResearchView {
        age_bands: view(s.age_bands),
        sexes: view(s.sexes),
        medications: view(s.medications),
        side_effects: view(s.side_effects),
        appointments_per_month: view(s.appointments_per_month),
    }))
}
