//! Routes, one file per endpoint group, and the OpenAPI document.

pub mod admin;
pub mod appointments;
pub mod assistant;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod calendar;
pub mod console;
pub mod consultations;
pub mod docs;
pub mod fhir;
pub mod health;
pub mod medications;
pub mod metrics;
pub mod organization;
pub mod patients;
pub mod problems;
pub mod research;
pub mod service_keys;
pub mod telephony;
pub mod users;
pub mod verification;
pub mod voice;
pub mod voicemail;

mod use_cases;

use actix_web::web;

use crate::http::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::scope())
        .configure(metrics::configure)
        .service(
            web::scope("/api/v1")
                .configure(auth::configure)
                .configure(backend::configure)
                .configure(patients::configure)
                .configure(appointments::configure)
                .configure(calendar::configure)
                .configure(medications::configure)
                .configure(consultations::configure)
                .configure(verification::configure)
                .configure(telephony::configure)
                .configure(voicemail::configure)
                .configure(research::configure)
                .configure(assistant::configure)
                .configure(voice::configure)
                .configure(service_keys::configure)
                .configure(admin::configure)
                .configure(users::configure)
                .configure(organization::configure)
                .configure(audit::configure),
        )
        .service(web::scope(crate::fhir::BASE_PATH).configure(fhir::configure))
        .configure(auth::configure_well_known)
        .configure(docs::configure)
        .configure(console::configure);
}

/// The fallback for unknown routes.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
