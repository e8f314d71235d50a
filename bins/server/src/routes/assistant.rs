//! `/api/v1/assistant/messages`: the AI assistant, off unless the
//! deployment has a provider and both the deployment and the organization
//! declare a business associate agreement. With a patient in context, the
//! patient's identifiers leave Carapace only as placeholders and are put
//! back in the answer. Each user's conversation is stored sealed.
//! Requests count against the `ai` rate-limit class.

use actix_web::{HttpResponse, web};
use carapace_auth::policy::Permission;
use carapace_clinical::assistant::{
    AiProvider as _, AssistantRepository as _, Availability, HISTORY_TURNS, Redactor,
    SYSTEM_PROMPT, Speaker, ai_gate, message, prompt,
};
use carapace_clinical::patient::{PatientId, PatientRepository as _};
use carapace_phi_crypto::Phi;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::ApiError;
use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::routes::patients::related;
use crate::state::AppState;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/assistant/messages")
            .wrap(actix_web::middleware::from_fn(
                crate::http::idempotency::middleware,
            ))
            .route(web::post().to(send))
            .route(web::get().to(history)),
    );
}

/// A message to the assistant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// 1-4000 characters.
    #[schema(max_length = 4000)]
    message: String,
    /// A patient of yours the conversation is about (their identifiers are
    /// replaced by placeholders before anything leaves Carapace).
    patient_id: Option<Uuid>,
}

/// The assistant's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerBody {
    answer: String,
}

/// One turn of the conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnView {
    /// `user` or `assistant`.
    speaker: String,
    text: String,
}

fn gate(state: &AppState, auth: &Authorized) -> Result<(), ApiError> {
    Ok(ai_gate(Availability {
        deployment_enabled: state.ai.is_some(),
        deployment_baa: state.ai_baa_signed,
        org_baa: auth.1.ai_baa,
    })?)
}

/// Sends a message and returns the answer.
#[utoipa::path(post, path = "/api/v1/assistant/messages", tag = "assistant", request_body = MessageBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = AnswerBody),
        (status = 403, description = "org_baa_missing, or no relationship to the patient", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "ai_disabled or deployment_baa_missing", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn send(
    auth: Authorized,
    state: web::Data<AppState>,
    body: JsonBody<MessageBody>,
) -> Result<HttpResponse, ApiError> {
    gate(&state, &auth)?;
    let Some(ai) = state.ai.as_ref() else {
        return Err(ApiError::Internal("gate passed without a provider".into()));
    };
    let text = message(&body.0.message)?;
    let (access, redactor) = match body.0.patient_id {
        None => (auth.access(), Redactor::none()),
        Some(id) => {
            let id = PatientId::from_uuid(id);
            let access = related(&state, &auth, id, Permission::PatientRead).await?;
            let patient = state
                .patients
                .get(&access, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            (access, Redactor::for_patient(&patient.demographics))
        }
    };
    let earlier = state.assistant.history(&access, HISTORY_TURNS).await?;
    let outgoing = prompt(&earlier, &text, &redactor);
    let raw = ai.complete(SYSTEM_PROMPT, &outgoing).await.map_err(|e| {
        tracing::warn!(error = %e, "AI provider failed");
        ApiError::Off {
            code: "ai_unavailable",
            detail: "the AI provider did not answer; try again later",
        }
    })?;
    let answer = redactor.restore(&raw);
    state
        .assistant
        .append(
            &access,
            &[
                (Speaker::User, text),
                (Speaker::Assistant, Phi::new(answer.clone())),
            ],
        )
        .await?;
    Ok(HttpResponse::Ok().json(AnswerBody { answer }))
}

/// The caller's conversation (the last 20 turns).
#[utoipa::path(get, path = "/api/v1/assistant/messages", tag = "assistant", security(("bearer" = [])),
    responses(
        (status = 200, body = [TurnView]),
        (status = 403, description = "org_baa_missing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "ai_disabled or deployment_baa_missing", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    gate(&state, &auth)?;
    let turns = state
        .assistant
        .history(&auth.access(), HISTORY_TURNS)
        .await?;
    let views: Vec<TurnView> = turns
        .into_iter()
        .map(|(s, t)| TurnView {
            speaker: s.as_str().to_owned(),
            text: t.expose_phi().clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}
