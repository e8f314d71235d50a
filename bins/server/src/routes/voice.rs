//! `/api/v1/voice/…`: speech to text and text to speech, under the
//! assistant's agreements (the deployment's and the organization's BAA)
//! and its `ai` rate-limit class. Audio is recognised by its bytes, never
//! by the declared content type, and bounded in size and length; each use
//! is recorded as a disclosure to the provider before anything is sent.

use actix_web::{HttpResponse, web};
use carapace_clinical::ClinicalError;
use carapace_clinical::assistant::Availability;
use carapace_clinical::speech::{self, limits};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::problems;
use crate::state::{AppState, State};

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/voice/transcriptions")
            .app_data(web::PayloadConfig::new(limits::AUDIO_BYTES_MAX))
            .route(web::post().to(transcribe)),
    )
    .service(web::resource("/voice/speech").route(web::post().to(speak)));
}

fn availability(state: &AppState, auth: &Authorized) -> Availability {
    Availability {
        deployment_enabled: state.speech.is_some(),
        deployment_baa: state.ai_baa_signed,
        org_baa: auth.settings.ai_baa,
    }
}

/// What was said.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptionBody {
    text: String,
}

/// Transcribes audio (PCM WAV, at most 10 MiB and 300 seconds).
#[utoipa::path(post, operation_id = "voice_transcribe", path = "/api/v1/voice/transcriptions", tag = "assistant",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "PCM WAV audio; its type is read from its bytes, whatever Content-Type says"),
    responses(
        (status = 200, body = TranscriptionBody),
        problems::OrgBaaMissing,
        (status = 415, description = "not audio Carapace accepts", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "empty or longer than 300 seconds", body = Problem, content_type = "application/problem+json"),
        problems::SpeechUnavailable,
    ))]
pub async fn transcribe(auth: Authorized, state: State, body: web::Bytes) -> Reply {
    let audio = speech::audio(body.to_vec()).map_err(|e| match e {
        ClinicalError::Refused {
            code: "unsupported_audio",
            ..
        } => ApiError::UnsupportedMediaType,
        other => other.into(),
    })?;
    let gate = availability(&state, &auth);
    let Some(provider) = state.speech.as_ref() else {
        return Err(carapace_clinical::assistant::ai_gate(gate)
            .err()
            .map_or(ApiError::Internal("no speech provider".into()), Into::into));
    };
    let text = speech::transcribe(provider, &state.audit, &auth.access(), gate, &audio).await?;
    Ok(HttpResponse::Ok().json(TranscriptionBody {
        text: text.expose_phi().clone(),
    }))
}

/// Text to speak.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeechBody {
    /// 1-1000 characters.
    #[schema(max_length = 1000)]
    text: String,
}

/// Speaks text (PCM WAV).
#[utoipa::path(post, operation_id = "voice_speak", path = "/api/v1/voice/speech", tag = "assistant", request_body = SpeechBody,
    responses(
        (status = 200, description = "the audio", content_type = "audio/wav", body = Vec<u8>),
        problems::OrgBaaMissing,
        problems::SpeechUnavailable,
    ))]
pub async fn speak(auth: Authorized, state: State, body: JsonBody<SpeechBody>) -> Reply {
    let text = speech::speech_text(&body.0.text)?;
    let gate = availability(&state, &auth);
    let Some(provider) = state.speech.as_ref() else {
        return Err(carapace_clinical::assistant::ai_gate(gate)
            .err()
            .map_or(ApiError::Internal("no speech provider".into()), Into::into));
    };
    let audio = speech::synthesize(provider, &state.audit, &auth.access(), gate, &text).await?;
    Ok(HttpResponse::Ok()
        .content_type(audio.format.media_type())
        .body(audio.bytes.expose_phi().clone()))
}
