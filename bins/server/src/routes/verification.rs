//! Prior-authorization verification tasks. Staff create, follow and cancel
//! them and read the transcript; a bot (a service key whose role is
//! `service`) takes one from the queue, reads the minimal view, reports
//! progress, uploads the transcript in chunks, and completes or fails it.
//! Every call is authenticated; every bot read and write is recorded as the
//! service account.

use actix_web::{HttpResponse, web};
use carapace_auth::policy::Permission;
use carapace_clinical::FieldError;
use carapace_clinical::verification::{
    BotView, Progress, Task, TaskId, TaskInput, TaskStatus, VerificationRepository as _,
    reference_number, supervisor_phone, transcript_chunk,
};
use carapace_phi_crypto::Phi;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::patients::related;
use crate::routes::problems;
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/verification-tasks")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/verification-tasks/queue").route(web::get().to(queue)))
    .service(web::resource("/verification-tasks/{id}").route(web::get().to(get)))
    .service(web::resource("/verification-tasks/{id}/cancel").route(web::post().to(cancel)))
    .service(web::resource("/verification-tasks/{id}/claim").route(web::post().to(claim)))
    .service(web::resource("/verification-tasks/{id}/bot-view").route(web::get().to(view)))
    .service(web::resource("/verification-tasks/{id}/progress").route(web::post().to(progress)))
    .service(
        crate::http::idempotency::resource("/verification-tasks/{id}/transcript")
            .route(web::post().to(upload))
            .route(web::get().to(transcript)),
    )
    .service(
        web::resource("/organization/verification-settings")
            .route(web::get().to(settings))
            .route(web::put().to(put_settings)),
    );
}

/// A task to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    patient_id: Uuid,
    #[schema(example = "Acme Health", max_length = 200)]
    payer_name: String,
    #[schema(example = "+1 800 555 0199", max_length = 32)]
    payer_phone: String,
    #[schema(example = "Gold PPO", max_length = 200)]
    plan: String,
    /// 1-20 CPT/HCPCS codes.
    #[schema(max_items = 20, example = json!(["99213"]))]
    procedure_codes: Vec<String>,
}

/// A task, as staff see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    id: Uuid,
    patient_id: Uuid,
    payer_name: String,
    payer_phone: String,
    plan: String,
    procedure_codes: Vec<String>,
    /// `pending`, `claimed`, `calling`, `completed`, `failed`, `cancelled`.
    status: String,
    claimed_by: Option<String>,
    reference_number: Option<String>,
    transcript_chunks: u32,
    created_by: String,
    created_at: String,
    updated_at: String,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        let r = &t.request;
        Self {
            id: t.id.as_uuid(),
            patient_id: r.patient.as_uuid(),
            payer_name: r.payer_name.expose_phi().clone(),
            payer_phone: r.payer_phone.expose_phi().clone(),
            plan: r.plan.expose_phi().clone(),
            procedure_codes: r.procedure_codes.expose_phi().clone(),
            status: t.status.as_str().to_owned(),
            claimed_by: t.claimed_by.as_ref().map(|s| s.as_str().to_owned()),
            reference_number: t.reference_number.as_ref().map(|s| s.expose_phi().clone()),
            transcript_chunks: t.transcript_chunks,
            created_by: t.created_by.as_str().to_owned(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// What a bot sees: exactly these fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotViewBody {
    task_id: Uuid,
    patient_name: String,
    #[schema(format = Date)]
    birth_date: String,
    member_id: Option<String>,
    payer_name: String,
    payer_phone: String,
    plan: String,
    procedure_codes: Vec<String>,
    /// The organization's supervisor number, present only while the task is
    /// `calling` (the bot may escalate) and the organization has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    supervisor_phone: Option<String>,
}

impl From<BotView> for BotViewBody {
    fn from(v: BotView) -> Self {
        Self {
            task_id: v.task_id.as_uuid(),
            patient_name: v.patient_name.expose_phi().clone(),
            birth_date: v.birth_date.expose_phi().to_string(),
            member_id: v.member_id.map(|m| m.expose_phi().clone()),
            payer_name: v.payer_name.expose_phi().clone(),
            payer_phone: v.payer_phone.expose_phi().clone(),
            plan: v.plan.expose_phi().clone(),
            procedure_codes: v.procedure_codes.expose_phi().clone(),
            supervisor_phone: v.supervisor_phone.map(|p| p.expose_phi().clone()),
        }
    }
}

/// The organization's verification settings.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationSettingsBody {
    /// The number a bot hands a call to when it escalates (7-15 digits
    /// with `+ ( ) - .` and spaces), or `null` for none. Sealed at rest;
    /// offered to a bot only while its task is `calling`.
    #[schema(example = "+1 617 555 0123", max_length = 32)]
    supervisor_phone: Option<String>,
}

/// Reads the verification settings (administrators).
#[utoipa::path(get, operation_id = "verification_settings_get", path = "/api/v1/organization/verification-settings", tag = "verification",
    responses((status = 200, body = VerificationSettingsBody)))]
pub async fn settings(auth: Authorized, state: State) -> Reply {
    let phone = state.verifications.supervisor_phone(&auth.access()).await?;
    Ok(HttpResponse::Ok().json(VerificationSettingsBody {
        supervisor_phone: phone.map(|p| p.expose_phi().clone()),
    }))
}

/// Replaces the verification settings (administrators).
#[utoipa::path(put, operation_id = "verification_settings_put", path = "/api/v1/organization/verification-settings", tag = "verification",
    request_body = VerificationSettingsBody,
    responses((status = 200, body = VerificationSettingsBody)))]
pub async fn put_settings(
    auth: Authorized,
    state: State,
    body: JsonBody<VerificationSettingsBody>,
) -> Reply {
    let phone = body
        .0
        .supervisor_phone
        .as_deref()
        .map(supervisor_phone)
        .transpose()?;
    state
        .verifications
        .set_supervisor_phone(&auth.access(), phone.as_ref())
        .await?;
    Ok(HttpResponse::Ok().json(VerificationSettingsBody {
        supervisor_phone: phone.map(|p| p.expose_phi().clone()),
    }))
}

/// Asks for a payer to be called about a patient's procedures.
#[utoipa::path(post, operation_id = "verification_create", path = "/api/v1/verification-tasks", tag = "verification", request_body = TaskBody,
    responses(
        (status = 201, body = TaskView),
        problems::NoSuchPatient,
    ))]
pub async fn create(auth: Authorized, state: State, body: JsonBody<TaskBody>) -> Reply {
    let b = body.0;
    let request = TaskInput {
        patient_id: b.patient_id,
        payer_name: b.payer_name,
        payer_phone: b.payer_phone,
        plan: b.plan,
        procedure_codes: b.procedure_codes,
    }
    .parse()?;
    let access = related(
        &state,
        &auth,
        request.patient,
        Permission::VerificationManage,
    )
    .await?;
    let made = state
        .verifications
        .create(&access, &request)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Created().json(TaskView::from(&made)))
}

/// Listing filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusFilter {
    /// Only tasks in this status.
    status: Option<String>,
}

fn status_filter(raw: Option<&str>) -> Result<Option<TaskStatus>, ApiError> {
    raw.map(|s| {
        TaskStatus::parse(s).ok_or_else(|| {
            ApiError::Invalid(vec![FieldError::new("status", "must be a task status")])
        })
    })
    .transpose()
}

/// The organization's tasks, newest first (at most 200).
#[utoipa::path(get, operation_id = "verification_list", path = "/api/v1/verification-tasks", tag = "verification",
    params(StatusFilter),
    responses((status = 200, body = [TaskView])))]
pub async fn list(auth: Authorized, state: State, params: web::Query<StatusFilter>) -> Reply {
    let status = status_filter(params.status.as_deref())?;
    let tasks = state.verifications.list(&auth.access(), status).await?;
    let views: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// A task waiting for a bot: its id only.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedTask {
    id: Uuid,
    created_at: String,
}

/// The pending tasks a bot may claim: ids only, oldest first.
#[utoipa::path(get, operation_id = "verification_queue", path = "/api/v1/verification-tasks/queue", tag = "verification",
    responses((status = 200, body = [QueuedTask])))]
pub async fn queue(auth: Authorized, state: State) -> Reply {
    let mut tasks = state
        .verifications
        .list(&auth.access(), Some(TaskStatus::Pending))
        .await?;
    tasks.reverse();
    let ids: Vec<QueuedTask> = tasks
        .iter()
        .map(|t| QueuedTask {
            id: t.id.as_uuid(),
            created_at: rfc3339(t.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ids))
}

/// One task.
#[utoipa::path(get, operation_id = "verification_get", path = "/api/v1/verification-tasks/{id}", tag = "verification",
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, body = TaskView)))]
pub async fn get(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    let task = state
        .verifications
        .get(&auth.access(), id.into_inner())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}

/// Withdraws a task that is not under way.
#[utoipa::path(post, operation_id = "verification_cancel", path = "/api/v1/verification-tasks/{id}/cancel", tag = "verification",
    params(("id" = Uuid, Path, description = "task id")),
    responses(
        (status = 200, body = TaskView),
        problems::InvalidTransition,
    ))]
pub async fn cancel(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    let task = state
        .verifications
        .cancel(&auth.access(), id.into_inner())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}

/// A bot takes a pending task (409 if another took it first).
#[utoipa::path(post, operation_id = "verification_claim", path = "/api/v1/verification-tasks/{id}/claim", tag = "verification",
    params(("id" = Uuid, Path, description = "task id")),
    responses(
        (status = 204, description = "claimed"),
        problems::InvalidTransition,
    ))]
pub async fn claim(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    state
        .verifications
        .claim(&auth.access(), id.into_inner())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The bot's minimal view of the task it claimed.
#[utoipa::path(get, operation_id = "verification_bot_view", path = "/api/v1/verification-tasks/{id}/bot-view", tag = "verification",
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, body = BotViewBody)))]
pub async fn view(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    let view = state
        .verifications
        .bot_view(&auth.access(), id.into_inner())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(BotViewBody::from(view)))
}

/// A bot's progress report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// `calling`, `completed` (with `reference_number`) or `failed` (with
    /// `reason`).
    #[schema(example = "completed")]
    status: String,
    #[schema(max_length = 64)]
    reference_number: Option<String>,
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// The bot reports progress on the task it claimed.
#[utoipa::path(post, operation_id = "verification_progress", path = "/api/v1/verification-tasks/{id}/progress", tag = "verification", request_body = ProgressBody,
    params(("id" = Uuid, Path, description = "task id")),
    responses(
        (status = 204, description = "recorded"),
        problems::InvalidTransition,
    ))]
pub async fn progress(
    auth: Authorized,
    state: State,
    id: web::Path<TaskId>,
    body: JsonBody<ProgressBody>,
) -> Reply {
    let b = body.0;
    let report = match (b.status.as_str(), b.reference_number, b.reason) {
        ("calling", None, None) => Progress::Calling,
        ("completed", Some(r), None) => Progress::Completed(reference_number(&r)?),
        ("failed", None, Some(r)) => {
            let t = r.trim();
            if t.is_empty() || t.chars().count() > 500 || t.chars().any(char::is_control) {
                return Err(ApiError::Invalid(vec![FieldError::new(
                    "reason",
                    "must be 1 to 500 characters",
                )]));
            }
            Progress::Failed(Phi::new(t.to_owned()))
        }
        _ => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "status",
                "calling (alone), completed with reference_number, or failed with reason",
            )]));
        }
    };
    state
        .verifications
        .report(&auth.access(), id.into_inner(), &report)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::NoContent().finish())
}

/// One transcript chunk.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkBody {
    /// 0 for the first chunk, then 1, 2, … (at most 15).
    #[schema(maximum = 15)]
    seq: u32,
    /// Up to 16 KiB of text.
    #[schema(max_length = 16384)]
    text: String,
}

/// Chunks received so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkReceipt {
    chunks: u32,
}

/// The bot uploads the next transcript chunk of the task it is calling on
/// (text only; audio is never accepted).
#[utoipa::path(post, operation_id = "verification_upload", path = "/api/v1/verification-tasks/{id}/transcript", tag = "verification", request_body = ChunkBody,
    params(("id" = Uuid, Path, description = "task id")),
    responses(
        (status = 200, body = ChunkReceipt),
        (status = 409, description = "chunk_out_of_order, transcript_full or invalid_transition", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload(
    auth: Authorized,
    state: State,
    id: web::Path<TaskId>,
    body: JsonBody<ChunkBody>,
) -> Reply {
    let b = body.0;
    let text = transcript_chunk(b.text)?;
    let chunks = state
        .verifications
        .append_transcript(&auth.access(), id.into_inner(), b.seq, &text)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ChunkReceipt { chunks }))
}

/// A transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptBody {
    text: String,
}

/// The task's whole transcript, for staff.
#[utoipa::path(get, operation_id = "verification_transcript", path = "/api/v1/verification-tasks/{id}/transcript", tag = "verification",
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, body = TranscriptBody)))]
pub async fn transcript(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    let text = state
        .verifications
        .transcript(&auth.access(), id.into_inner())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(TranscriptBody {
        text: text.expose_phi().clone(),
    }))
}
