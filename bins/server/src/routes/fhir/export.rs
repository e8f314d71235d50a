//! Bulk Data export (Flat FHIR v2) of the patients a caller may list, or
//! of a group (a patient's care team; what a consent shares):
//! `GET /fhir/R4/Patient/$export` (or `Group/{id}/$export`) with
//! `Prefer: respond-async` starts a
//! job (202, `Content-Location` of its status); the status answers 202
//! while it runs and the manifest once done; each NDJSON file is
//! downloaded with a token of the same requester; `DELETE` on the status
//! cancels and deletes. What a job holds is decided by the listing and
//! history use cases, as for the REST routes; every exported patient is
//! recorded as a disclosure (`patient.export`, in the patient's access
//! log); files are sealed at rest and deleted after
//! `CARAPACE_EXPORT_TTL_SECS`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use carapace_auth::smart::ResourceType;
use carapace_clinical::export::{
    ExportFile, ExportId, ExportJob, ExportRepository as _, ExportStatus, FAILED, Group, Job,
    NewExport, RENEW_EVERY, STOPPED, Scope, consent_scope, failure_reason, gather, may_follow,
    requested_types,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Params, bad, base, query_pairs, read_id};
use crate::fhir::capability::SearchParam;
use crate::fhir::instant;
use crate::http::auth::Authorized;
use crate::http::{ApiError, Reply};
use crate::routes::use_cases::{caller, medication_records, patient_access, record_sharing};
use crate::state::{AppState, State};

/// The parameters of `$export`, each once.
const EXPORT_PARAMS: &[SearchParam] = &[
    SearchParam {
        name: "_type",
        kind: "string",
        most: 1,
        doc: "the resource types, comma-separated",
    },
    SearchParam {
        name: "_since",
        kind: "instant",
        most: 1,
        doc: "only what changed since (with its zone)",
    },
    SearchParam {
        name: "_outputFormat",
        kind: "string",
        most: 1,
        doc: "application/fhir+ndjson",
    },
];

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/Patient/$export").route(web::get().to(kick_off)))
        .service(web::resource("/Group/{id}/$export").route(web::get().to(group_kick_off)))
        .service(
            web::resource("/$export-status/{id}")
                .route(web::get().to(status))
                .route(web::delete().to(cancel)),
        )
        .service(web::resource("/$export-file/{id}/{n}").route(web::get().to(download)));
}

/// What an export is asked for, for the OpenAPI document (the query
/// itself is read where the export starts).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Patient, MedicationStatement, AdverseEvent (comma-separated)
    #[param(rename = "_type")]
    pub types: Option<String>,
    /// an instant: only what changed since
    #[param(rename = "_since")]
    pub since: Option<String>,
    /// application/fhir+ndjson
    #[param(rename = "_outputFormat")]
    pub output_format: Option<String>,
}

/// Starts an export of the patients the caller may list (and their
/// medications and side effects), asynchronously.
#[utoipa::path(get, operation_id = "fhir_patient_export", path = "/fhir/R4/Patient/$export", tag = "fhir",
    params(("Prefer" = String, Header, description = "respond-async"),
           ExportParams),
    responses((status = 202, description = "started; Content-Location names its status")))]
pub async fn kick_off(auth: Authorized, state: State, req: HttpRequest) -> Reply {
    start(auth, state, req, None).await
}

/// Starts an export of a group: `care-team-<patient id>` (the patient's
/// compartment, for whoever may read the patient) or `consent-<consent
/// id>` (what an active consent shares, for whoever may manage it).
#[utoipa::path(get, operation_id = "fhir_group_export", path = "/fhir/R4/Group/{id}/$export", tag = "fhir",
    params(("id" = String, Path, description = "care-team-<patient id> or consent-<consent id>"),
           ("Prefer" = String, Header, description = "respond-async"),
           ExportParams),
    responses((status = 202, description = "started; Content-Location names its status")))]
pub async fn group_kick_off(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Reply {
    let group = Group::parse(&id).ok_or(ApiError::NotFound)?;
    start(auth, state, req, Some(group)).await
}

async fn start(auth: Authorized, state: State, req: HttpRequest, group: Option<Group>) -> Reply {
    let asynchronous = req
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "respond-async"));
    if !asynchronous {
        return Err(ApiError::BadHeader(
            "a bulk export needs Prefer: respond-async",
        ));
    }
    let params = query_pairs(&req)?;
    let p = Params::check(&params, "$export", &[EXPORT_PARAMS])?;
    let types = p.one("_type");
    let since = p
        .one("_since")
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| bad("_since", "must be an instant with its zone"))
        })
        .transpose()?;
    if p.one("_outputFormat").is_some_and(|v| {
        !matches!(
            v,
            "application/fhir+ndjson" | "application/ndjson" | "ndjson"
        )
    }) {
        return Err(bad("_outputFormat", "application/fhir+ndjson only"));
    }
    let requested = requested_types(types)?;
    let now = OffsetDateTime::now_utc();
    let (scope, types, path) = match group {
        None => (Scope::Listed, requested, "Patient/$export".to_owned()),
        Some(g @ Group::CareTeam(patient)) => {
            patient_access(&state)
                .care_team(&caller(&auth), patient, now)
                .await?;
            (Scope::One(patient), requested, format!("Group/{g}/$export"))
        }
        Some(g @ Group::Consent(id)) => {
            let consent = record_sharing(&state)
                .consent(&caller(&auth), id, now)
                .await?;
            let (scope, types) = consent_scope(&consent, &requested, now)?;
            (scope, types, format!("Group/{g}/$export"))
        }
    };
    let base = base(&req, &state);
    let new = NewExport {
        request_url: format!("{base}/{path}?{}", req.query_string()),
        types: types.clone(),
        since,
        expires_at: now + state.export_ttl,
        started_at: now,
    };
    let id = state.exports.create(&auth.access(), &new).await?;
    let job = Authorized {
        principal: auth.principal.clone(),
        settings: auth.settings,
        origin: auth.origin.clone(),
    };
    let runner = state.clone();
    tokio::spawn(async move { run(runner, job, id, scope, types, since).await });
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::CONTENT_LOCATION,
            format!("{base}/$export-status/{id}"),
        ))
        .finish())
}

/// Writes the export's files, then marks it complete (or failed).
async fn run(
    state: State,
    auth: Authorized,
    id: ExportId,
    scope: Scope,
    types: Vec<ResourceType>,
    since: Option<OffsetDateTime>,
) {
    let ctx = auth.principal.tenant();
    // Renewed while this task lives; should the server stop, the export
    // is failed once its lease runs out instead of in progress forever.
    let lease = Renewing(tokio::spawn({
        let (state, ctx) = (state.clone(), ctx.clone());
        async move {
            let mut every = tokio::time::interval(RENEW_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                match state.exports.renew(&ctx, id).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, export = %id, "could not renew a bulk export")
                    }
                }
            }
        }
    }));
    let job = Job {
        id,
        scope,
        types: &types,
        since,
    };
    let outcome = write(&state, &auth, &job)
        .await
        .and_then(|()| not_suspended(&state));
    drop(lease);
    let (status, error) = match &outcome {
        Ok(()) => (ExportStatus::Complete, None),
        Err(ApiError::Suspended) => (ExportStatus::Failed, Some(STOPPED)),
        Err(e) => {
            tracing::warn!(error = %e, export = %id, "bulk export failed");
            (ExportStatus::Failed, Some(FAILED))
        }
    };
    if let Err(e) = state.exports.finish(&ctx, id, status, error).await {
        tracing::warn!(error = %e, export = %id, "could not end a bulk export");
    }
}

/// An export's renewals, stopped when dropped (its runner ended, or
/// panicked).
struct Renewing(tokio::task::JoinHandle<()>);

impl Drop for Renewing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The kill switch stops an export under way too, not only new requests:
/// checked before every page of patients, every patient's records, the
/// files' write, and the export's completion.
fn not_suspended(state: &AppState) -> Result<(), ApiError> {
    if state.kill_switch.engaged() {
        return Err(ApiError::Suspended);
    }
    Ok(())
}

fn ndjson(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads what the export holds ([`gather`]: the same decisions and audit
/// events as the reads it stands for), then stores one NDJSON file per
/// type with anything in it.
async fn write(state: &AppState, auth: &Authorized, job: &Job<'_>) -> Result<(), ApiError> {
    let now = OffsetDateTime::now_utc();
    let records = medication_records(state);
    let found = gather(&records, &caller(auth), job, now, || not_suspended(state)).await?;
    let files = [
        (
            ResourceType::Patient,
            found
                .patients
                .iter()
                .map(crate::fhir::patient::to_fhir)
                .collect::<Vec<_>>(),
        ),
        (
            ResourceType::MedicationStatement,
            found
                .medications
                .iter()
                .map(|m| crate::fhir::clinical::medication_statement(m, now.date()))
                .collect(),
        ),
        (
            ResourceType::AdverseEvent,
            found
                .side_effects
                .iter()
                .map(crate::fhir::clinical::adverse_event)
                .collect(),
        ),
    ];
    let non_empty = files.into_iter().filter(|(_, lines)| !lines.is_empty());
    let ctx = auth.principal.tenant();
    for (n, (resource_type, lines)) in (1u32..).zip(non_empty) {
        not_suspended(state)?;
        let file = ExportFile {
            n,
            resource_type,
            count: u64::try_from(lines.len()).unwrap_or(u64::MAX),
        };
        state
            .exports
            .add_file(&ctx, job.id, &file, &ndjson(&lines))
            .await?;
    }
    Ok(())
}

/// The export's status: 202 while it runs, the manifest once done.
#[utoipa::path(get, operation_id = "fhir_export_status", path = "/fhir/R4/$export-status/{id}", tag = "fhir",
    params(("id" = String, Path, description = "export id")),
    responses((status = 200, description = "the manifest", body = Object, content_type = "application/json"),
              (status = 202, description = "in progress (X-Progress, Retry-After)"),
              (status = 500, body = super::OperationOutcome, content_type = "application/fhir+json", description = "export_failed: the export failed, and why")))]
pub async fn status(
    auth: Authorized,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Reply {
    let id = read_id(&id, ExportId::from_uuid)?;
    let now = OffsetDateTime::now_utc();
    let job = followed(&auth, &state, id, now).await?;
    match job.status {
        ExportStatus::InProgress => Ok(HttpResponse::Accepted()
            .insert_header(("x-progress", "in progress"))
            .insert_header((header::RETRY_AFTER, "2"))
            .finish()),
        ExportStatus::Failed => Err(ApiError::ExportFailed(failure_reason(job.error.as_deref()))),
        ExportStatus::Complete => {
            let base = base(&req, &state);
            let output: Vec<Value> = job
                .files
                .iter()
                .map(|f| {
                    json!({
                        "type": f.resource_type.as_str(),
                        "url": format!("{base}/$export-file/{id}/{}", f.n),
                        "count": f.count,
                    })
                })
                .collect();
            let manifest = json!({
                "transactionTime": instant(job.created_at),
                "request": job.request_url,
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            });
            Ok(HttpResponse::Ok()
                .insert_header((
                    header::EXPIRES,
                    job.expires_at
                        .format(&time::format_description::well_known::Rfc2822)
                        .unwrap_or_default()
                        .replace("+0000", "GMT"),
                ))
                .json(manifest))
        }
    }
}

/// The caller's own export `id` (404 for anyone else's, or none).
async fn followed(
    auth: &Authorized,
    state: &AppState,
    id: ExportId,
    now: OffsetDateTime,
) -> Result<ExportJob, ApiError> {
    state
        .exports
        .get(&auth.principal.tenant(), id, now)
        .await?
        .filter(|j| may_follow(j, auth.principal.subject()))
        .ok_or(ApiError::NotFound)
}

/// Cancels an export and deletes it with its files.
#[utoipa::path(delete, operation_id = "fhir_export_cancel", path = "/fhir/R4/$export-status/{id}", tag = "fhir",
    params(("id" = String, Path, description = "export id")),
    responses((status = 202, description = "cancelled and deleted")))]
pub async fn cancel(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    let id = read_id(&id, ExportId::from_uuid)?;
    let now = OffsetDateTime::now_utc();
    followed(&auth, &state, id, now).await?;
    if state.exports.delete(&auth.access(), id).await? {
        Ok(HttpResponse::Accepted().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

/// One NDJSON file of a complete export, for its requester.
#[utoipa::path(get, operation_id = "fhir_export_file", path = "/fhir/R4/$export-file/{id}/{n}", tag = "fhir",
    params(("id" = String, Path, description = "export id"), ("n" = String, Path, description = "file number")),
    responses((status = 200, description = "NDJSON, one resource per line", content_type = "application/fhir+ndjson")))]
pub async fn download(auth: Authorized, state: State, path: web::Path<(String, String)>) -> Reply {
    let (raw, n) = path.into_inner();
    let id = read_id(&raw, ExportId::from_uuid)?;
    let n: u32 = n
        .parse()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .ok_or(ApiError::NotFound)?;
    let now = OffsetDateTime::now_utc();
    followed(&auth, &state, id, now).await?;
    let body = state
        .exports
        .file(&auth.access(), id, n, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::build(StatusCode::OK)
        .insert_header((header::CONTENT_TYPE, "application/fhir+ndjson"))
        .body(body))
}
