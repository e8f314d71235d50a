//! `Task`: the organization's prior-authorization verification tasks, read
//! and searched by the staff who manage them (`verification:manage`),
//! through the same repository calls and audit events as
//! `/api/v1/verification-tasks`; and the calling bot's minimal view of the
//! task it works (`verification:work`), `Task/{id}/$bot-view`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use carapace_clinical::verification::{TaskId, VerificationRepository as _};

use super::{Params, Resource, Searchset, bad, fhir_json, query_pairs, read_id, searchset};
use crate::fhir::capability::TASK_SEARCH;
use crate::fhir::task::{bot_task, status_of, to_fhir};
use crate::http::auth::Authorized;
use crate::http::{ApiError, Reply};
use crate::state::State;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/Task").route(web::get().to(search)))
        .service(web::resource("/Task/{id}").route(web::get().to(read)))
        .service(web::resource("/Task/{id}/$bot-view").route(web::get().to(bot_view)));
}

/// The calling bot's minimal view of a task it claimed (the same use case
/// and audit event as `/api/v1/verification-tasks/{id}/bot-view`).
#[utoipa::path(get, operation_id = "fhir_task_bot_view", path = "/fhir/R4/Task/{id}/$bot-view", tag = "fhir",
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Task, minimal")))]
pub async fn bot_view(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, TaskId::from_uuid)?;
    let view = state
        .verifications
        .bot_view(&auth.access(), id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(fhir_json(StatusCode::OK, &bot_task(&view)))
}

/// Reads a verification task.
#[utoipa::path(get, operation_id = "fhir_task_read", path = "/fhir/R4/Task/{id}", tag = "fhir",
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Task")))]
pub async fn read(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, TaskId::from_uuid)?;
    let task = state
        .verifications
        .get(&auth.access(), id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(fhir_json(StatusCode::OK, &to_fhir(&task)))
}

/// The organization's verification tasks, newest first (at most 200),
/// optionally of one `status`.
#[utoipa::path(get, operation_id = "fhir_task_search", path = "/fhir/R4/Task", tag = "fhir",
    params(("status" = Option<String>, Query, description = "requested, accepted, in-progress, completed, failed or cancelled")),
    responses(Searchset))]
pub async fn search(auth: Authorized, state: State, req: HttpRequest) -> Reply {
    let params = query_pairs(&req)?;
    let p = Params::check(&params, "the Task search", &[TASK_SEARCH])?;
    let status = p
        .one("status")
        .map(|v| {
            status_of(v).ok_or_else(|| {
                bad(
                    "status",
                    "requested, accepted, in-progress, completed, failed or cancelled",
                )
            })
        })
        .transpose()?;
    let tasks = state.verifications.list(&auth.access(), status).await?;
    let found = tasks
        .iter()
        .map(|t| (t.id.to_string(), to_fhir(t)))
        .collect();
    Ok(searchset(&req, &state, "Task", found))
}
