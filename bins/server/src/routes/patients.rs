//! `/api/v1/patients`: create, read, update, delete and list, each confined
//! to the caller's organization.

pub mod care;
mod dto;

pub use dto::{CreatePatient, PatientList, PatientView, UpdatePatient};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use carapace_audit::Access;
use carapace_auth::policy::Permission;
use carapace_clinical::patient::{CURSOR_SCOPE, PatientId, PatientQuery, Visibility};
use carapace_clinical::patient::{PageLimit, member_id_filter, name_dob_filter};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::extract::{JsonBody, MergePatchBody};
use crate::http::{ApiError, Reply};
use crate::routes::problems;
use crate::routes::use_cases::{caller, patient_access};
use crate::state::{AppState, State};

/// Registers the patient routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/patients")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/patients/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .configure(care::configure);
}

/// The caller's access for `permission` on patient `id`: the
/// patient-access use case ([`PatientAccess::reach`](carapace_clinical::access::PatientAccess::reach)).
pub(crate) async fn related(
    state: &AppState,
    auth: &Authorized,
    id: PatientId,
    permission: Permission,
) -> Result<Access, ApiError> {
    Ok(patient_access(state)
        .reach(&caller(auth), id, permission, OffsetDateTime::now_utc())
        .await?)
}

fn today() -> time::Date {
    OffsetDateTime::now_utc().date()
}

/// Creates a patient in the caller's organization.
#[utoipa::path(post, operation_id = "patients_create", path = "/api/v1/patients", tag = "patients", request_body = CreatePatient,
    responses(
        (status = 201, body = PatientView),
    ))]
pub async fn create(auth: Authorized, state: State, body: JsonBody<CreatePatient>) -> Reply {
    let demographics = body.0.into_input().parse(today())?;
    let patient = patient_access(&state)
        .register(&caller(&auth), &demographics)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/patients/{}", patient.id)))
        .json(PatientView::from(&patient)))
}

/// Reads a patient.
#[utoipa::path(get, operation_id = "patients_get", path = "/api/v1/patients/{id}", tag = "patients",
    params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 200, body = PatientView),
        problems::NoSuchPatient,
    ))]
pub async fn get(auth: Authorized, state: State, id: web::Path<PatientId>) -> Reply {
    let id = id.into_inner();
    let patient = patient_access(&state)
        .read(&caller(&auth), id, OffsetDateTime::now_utc())
        .await?;
    Ok(HttpResponse::Ok().json(PatientView::from(&patient)))
}

/// Changes some fields of a patient (`null` clears an optional field): a
/// JSON merge patch, sent as `application/merge-patch+json` or
/// `application/json`.
#[utoipa::path(patch, operation_id = "patients_update", path = "/api/v1/patients/{id}", tag = "patients",
    request_body(content(
        (UpdatePatient = "application/json"),
        (UpdatePatient = "application/merge-patch+json"),
    )),
    params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 200, body = PatientView),
    ))]
pub async fn update(
    auth: Authorized,
    state: State,
    id: web::Path<PatientId>,
    body: MergePatchBody<UpdatePatient>,
) -> Reply {
    let id = id.into_inner();
    let patch = body.0.into_input().parse(today())?;
    let patient = patient_access(&state)
        .update(&caller(&auth), id, &patch, None, OffsetDateTime::now_utc())
        .await?;
    Ok(HttpResponse::Ok().json(PatientView::from(&patient)))
}

/// Deletes a patient.
#[utoipa::path(delete, operation_id = "patients_delete", path = "/api/v1/patients/{id}", tag = "patients",
    params(("id" = Uuid, Path, description = "patient id")),
    responses(
        (status = 204, description = "deleted"),
    ))]
pub async fn delete(auth: Authorized, state: State, id: web::Path<PatientId>) -> Reply {
    let id = id.into_inner();
    patient_access(&state)
        .delete(&caller(&auth), id, OffsetDateTime::now_utc())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only patients with exactly this insurance member id.
    member_id: Option<String>,
    /// With `birth_date`: only patients with exactly this family name.
    family_name: Option<String>,
    /// With `family_name`: only patients born on this day (`YYYY-MM-DD`).
    birth_date: Option<String>,
    /// Page size, 1-100 (default 50).
    limit: Option<String>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// Lists patients, oldest first, a page at a time.
#[utoipa::path(get, operation_id = "patients_list", path = "/api/v1/patients", tag = "patients",
    params(ListParams),
    responses(
        (status = 200, body = PatientList),
        problems::BadCursor,
    ))]
pub async fn list(auth: Authorized, state: State, params: web::Query<ListParams>) -> Reply {
    let ctx = auth.principal.tenant();
    let params = params.into_inner();
    let after = crate::http::extract::open_cursor(
        &state.cursor_key,
        ctx.org(),
        CURSOR_SCOPE,
        params.cursor.as_deref(),
        |b| Uuid::from_slice(b).ok().map(PatientId::from_uuid),
    )?;
    let query = PatientQuery {
        member_id: params
            .member_id
            .as_deref()
            .map(member_id_filter)
            .transpose()?,
        name_dob: match (params.family_name.as_deref(), params.birth_date.as_deref()) {
            (None, None) => None,
            (Some(n), Some(d)) => Some(name_dob_filter(n, d, today())?),
            _ => {
                return Err(ApiError::Invalid(vec![carapace_clinical::FieldError::new(
                    "family_name",
                    "family_name and birth_date are searched together",
                )]));
            }
        },
        limit: PageLimit::parse_text(params.limit.as_deref())?,
        after,
        visibility: Visibility::Nothing,
        updated: Default::default(),
    };
    let page = patient_access(&state).list(&caller(&auth), query).await?;
    let next_cursor = page.next_after.map(|id| {
        state
            .cursor_key
            .seal(ctx.org(), CURSOR_SCOPE, id.as_uuid().as_bytes())
    });
    Ok(HttpResponse::Ok().json(PatientList {
        items: page.items.iter().map(PatientView::from).collect(),
        next_cursor,
    }))
}
