//! `/api/v1/assistant/messages`: the AI assistant, off unless the
//! deployment has a provider and both the deployment and the organization
//! declare a business associate agreement. With a patient in context, the
//! patient's identifiers leave Carapace only as placeholders and are put
//! back in the answer. Each user's conversation is stored sealed.
//! Requests count against the `ai` rate-limit class.

use actix_web::{HttpResponse, web};
use carapace_auth::policy::Permission;
use carapace_clinical::assistant::{
    AiProvider as _, AssistantRepository as _, Availability, HISTORY_TURNS, Redactor, Speaker,
    ai_gate, disclosure, message, prompt,
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
    /// A patient of yours the conversation is about: each patient (and
    /// "no patient") has a conversation of its own. Their identifiers, and
    /// any identifier in the text, leave Carapace only as placeholders;
    /// each message is recorded in the patient's access log as a
    /// disclosure to the provider.
    patient_id: Option<Uuid>,
}

/// Which conversation to read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationParams {
    /// The patient the conversation is about (none: the conversation about
    /// no patient).
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
        org_baa: auth.settings.ai_baa,
    })?)
}

/// Sends a message and returns the answer.
#[utoipa::path(post, operation_id = "assistant_send", path = "/api/v1/assistant/messages", tag = "assistant", request_body = MessageBody,
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
    // The conversation: this user's about this patient (or about none).
    let context = body.0.patient_id.map(PatientId::from_uuid);
    let (access, mut redactor) = match context {
        None => (auth.access(), Redactor::none()),
        Some(id) => {
            let access = related(&state, &auth, id, Permission::PatientRead).await?;
            let patient = state
                .patients
                .get(&access, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            (access, Redactor::for_patient(&patient.demographics))
        }
    };
    let earlier = state
        .assistant
        .history(&access, context, HISTORY_TURNS)
        .await?;
    let outgoing = prompt(&earlier, &text, &mut redactor);
    if let Some(id) = context {
        // A disclosure, on the record before anything is sent.
        state
            .audit
            .record(&disclosure(&access, id, &ai.name()))
            .await?;
    }
    let raw = ai
        .complete(&outgoing.system, &outgoing.turns)
        .await
        .map_err(|e| {
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
            context,
            &[
                (Speaker::User, text),
                (Speaker::Assistant, Phi::new(answer.clone())),
            ],
        )
        .await?;
    Ok(HttpResponse::Ok().json(AnswerBody { answer }))
}

/// The caller's conversation about `patient_id` (or about no patient): the
/// last 20 turns.
#[utoipa::path(get, operation_id = "assistant_history", path = "/api/v1/assistant/messages", tag = "assistant", security(("bearer" = [])),
    params(ConversationParams),
    responses(
        (status = 200, body = [TurnView]),
        (status = 403, description = "org_baa_missing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "ai_disabled or deployment_baa_missing", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    auth: Authorized,
    state: web::Data<AppState>,
    params: web::Query<ConversationParams>,
) -> Result<HttpResponse, ApiError> {
    gate(&state, &auth)?;
    let context = params.into_inner().patient_id.map(PatientId::from_uuid);
    let access = match context {
        Some(id) => related(&state, &auth, id, Permission::PatientRead).await?,
        None => auth.access(),
    };
    let turns = state
        .assistant
        .history(&access, context, HISTORY_TURNS)
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
