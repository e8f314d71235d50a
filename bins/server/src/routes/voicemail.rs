//! `/api/v1/voicemails`: the organization's voicemails, for users with
//! `voicemail:read`: list, read (with the transcript) and play (every play
//! recorded).

use actix_web::{HttpResponse, web};
use carapace_clinical::telephony::voicemail::{Voicemail, VoicemailId, VoicemailRepository as _};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::{ApiError, Reply};
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/voicemails").route(web::get().to(list)))
        .service(web::resource("/voicemails/{id}").route(web::get().to(get)))
        .service(web::resource("/voicemails/{id}/audio").route(web::get().to(play)));
}

/// A voicemail.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoicemailView {
    id: Uuid,
    /// The caller's number.
    caller: String,
    /// The patient whose number matched (null: the organization's inbox).
    patient_id: Option<Uuid>,
    received_at: String,
    /// Null until the message is recorded.
    duration_seconds: Option<u32>,
    /// Null where it could not be transcribed.
    transcript: Option<String>,
    /// When the provider's copy was deleted.
    deleted_at_provider: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl From<Voicemail> for VoicemailView {
    fn from(v: Voicemail) -> Self {
        Self {
            id: v.id.as_uuid(),
            caller: v.caller.expose_phi().clone(),
            patient_id: v.patient.map(|p| p.as_uuid()),
            received_at: rfc3339(v.received_at),
            duration_seconds: v.duration_secs,
            transcript: v.transcript.map(|t| t.expose_phi().clone()),
            deleted_at_provider: v.deleted_at_provider.map(rfc3339),
        }
    }
}

/// The organization's voicemails, newest first (at most 200).
#[utoipa::path(get, operation_id = "voicemails_list", path = "/api/v1/voicemails", tag = "telephony",
    responses((status = 200, body = [VoicemailView])))]
pub async fn list(auth: Authorized, state: State) -> Reply {
    let found = state.voicemails.list(&auth.access()).await?;
    let views: Vec<VoicemailView> = found.into_iter().map(VoicemailView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// One voicemail, with its transcript.
#[utoipa::path(get, operation_id = "voicemails_get", path = "/api/v1/voicemails/{id}", tag = "telephony",
    params(("id" = Uuid, Path, description = "voicemail id")),
    responses((status = 200, body = VoicemailView)))]
pub async fn get(auth: Authorized, state: State, id: web::Path<VoicemailId>) -> Reply {
    let found = state
        .voicemails
        .get(&auth.access(), id.into_inner())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(VoicemailView::from(found)))
}

/// Plays a voicemail (WAV); every play is recorded.
#[utoipa::path(get, operation_id = "voicemails_play", path = "/api/v1/voicemails/{id}/audio", tag = "telephony",
    params(("id" = Uuid, Path, description = "voicemail id")),
    responses(
        (status = 200, description = "the audio", content_type = "audio/wav", body = Vec<u8>),
    ))]
pub async fn play(auth: Authorized, state: State, id: web::Path<VoicemailId>) -> Reply {
    let audio = state
        .voicemails
        .audio(&auth.access(), id.into_inner())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("audio/wav")
        .body(audio.expose_phi().clone()))
}
