//! `Practitioner`: the organization's clinicians with local accounts, for
//! whoever administers its users (`user:admin`, the permission of
//! `/api/v1/users`), through the same use case
//! ([`carapace_auth::local::admin::UserAdmin`]). Without local accounts
//! there are none to show (404). A token with SMART scopes never reads
//! them: no scope stands for user administration.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use carapace_auth::local::UserId;

use super::{Params, Resource, Searchset, bad, fhir_json, query_pairs, read_id, searchset};
use crate::fhir::appointment::SUBJECT_SYSTEM;
use crate::fhir::capability::PRACTITIONER_SEARCH;
use crate::fhir::practitioner::to_fhir;
use crate::http::auth::Authorized;
use crate::http::{ApiError, Reply};
use crate::state::{AppState, State, UserAdminService};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/Practitioner").route(web::get().to(search)))
        .service(web::resource("/Practitioner/{id}").route(web::get().to(read)));
}

fn admin(state: &AppState) -> Result<&UserAdminService, ApiError> {
    state.user_admin.as_ref().ok_or(ApiError::NotFound)
}

/// The organization's practitioners, optionally by `identifier`
/// (`urn:carapace:subject|<subject>`) and `active`.
#[utoipa::path(get, operation_id = "fhir_practitioner_search", path = "/fhir/R4/Practitioner", tag = "fhir",
    params(
        ("identifier" = Option<String>, Query, description = "urn:carapace:subject|<subject>"),
        ("active" = Option<String>, Query, description = "true or false"),
    ),
    responses(Searchset))]
pub async fn search(auth: Authorized, state: State, req: HttpRequest) -> Reply {
    let params = query_pairs(&req)?;
    let p = Params::check(&params, "the Practitioner search", &[PRACTITIONER_SEARCH])?;
    let subject = p.one("identifier").map(|v| {
        v.strip_prefix(SUBJECT_SYSTEM)
            .and_then(|v| v.strip_prefix('|'))
            .unwrap_or(v)
    });
    let active = match p.one("active") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(bad("active", "must be true or false")),
    };
    let found = admin(&state)?
        .practitioners(&auth.principal)
        .await?
        .iter()
        .filter(|a| subject.is_none_or(|s| s == a.id.to_string()))
        .filter(|a| active.is_none_or(|on| on == a.active))
        .map(|a| (a.id.to_string(), to_fhir(a)))
        .collect();
    Ok(searchset(&req, &state, "Practitioner", found))
}

/// One practitioner.
#[utoipa::path(get, operation_id = "fhir_practitioner_read", path = "/fhir/R4/Practitioner/{id}", tag = "fhir",
    params(("id" = String, Path, description = "the account's id (its subject)")),
    responses((status = 200, body = Resource, content_type = "application/fhir+json", description = "the Practitioner")))]
pub async fn read(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, UserId::from_uuid)?;
    let found = admin(&state)?
        .practitioner(&auth.principal, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(fhir_json(StatusCode::OK, &to_fhir(&found)))
}
