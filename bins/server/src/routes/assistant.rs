//! `/api/v1/assistant/messages`: the AI assistant, off unless the
//! deployment has a provider and both the deployment and the organization
//! declare a business associate agreement. With a patient in context, the
//! patient's identifiers leave Carapace only as placeholders and are put
//! back in the answer. Each user's conversation is stored sealed.
//! Requests count against the `ai` rate-limit class.

use actix_web::{HttpResponse, web};
use carapace_clinical::patient::PatientId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::Reply;
use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::routes::problems;
use crate::routes::use_cases::{assistant, caller};
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/assistant/messages")
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

/// Sends a message and returns the answer.
#[utoipa::path(post, operation_id = "assistant_send", path = "/api/v1/assistant/messages", tag = "assistant", request_body = MessageBody,
    responses(
        (status = 200, body = AnswerBody),
        (status = 403, description = "org_baa_missing, or no relationship to the patient", body = Problem, content_type = "application/problem+json"),
        problems::AiUnavailable,
    ))]
pub async fn send(auth: Authorized, state: State, body: JsonBody<MessageBody>) -> Reply {
    let context = body.0.patient_id.map(PatientId::from_uuid);
    let answer = assistant(&state)
        .send(
            &caller(&auth),
            context,
            &body.0.message,
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(AnswerBody { answer }))
}

/// The caller's conversation about `patient_id` (or about no patient): the
/// last 20 turns.
#[utoipa::path(get, operation_id = "assistant_history", path = "/api/v1/assistant/messages", tag = "assistant",
    params(ConversationParams),
    responses(
        (status = 200, body = [TurnView]),
        problems::OrgBaaMissing,
        problems::AiUnavailable,
    ))]
pub async fn history(
    auth: Authorized,
    state: State,
    params: web::Query<ConversationParams>,
) -> Reply {
    let context = params.into_inner().patient_id.map(PatientId::from_uuid);
    let turns = assistant(&state)
        .history(&caller(&auth), context, OffsetDateTime::now_utc())
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
