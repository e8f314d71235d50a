//! `/openapi.json` and the Swagger UI at `/docs/`, its assets compiled into
//! the binary (no network at build or run time).

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::{
    admin, appointments, assistant, audit, auth, backend, calendar, consultations, fhir, health,
    medications, metrics, organization, patients, research, service_keys, telephony, users,
    verification, voice, voicemail,
};
use crate::http::error::{Problem, ProblemField};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Carapace", description = "Multi-tenant healthcare backend. Errors are application/problem+json."),
    paths(
        health::live, health::ready, metrics::metrics,
        auth::login, auth::refresh, auth::logout, auth::jwks,
        auth::reset_request, auth::reset_confirm,
        auth::mfa_verify, auth::totp_enroll, auth::totp_activate, backend::token,
        patients::create, patients::get, patients::update, patients::delete, patients::list,
        patients::care::break_glass, patients::care::assign, patients::care::care_team, patients::care::link_account,
        service_keys::create, service_keys::list, service_keys::revoke,
        users::list, users::create, users::change_roles, users::lock, users::unlock, users::reset_mfa, users::deactivate,
        users::impersonate,
        organization::get, organization::put,
        audit::list, audit::access_log, audit::summary::daily, audit::summary::chain,
        admin::get, admin::put,
        appointments::book, appointments::list, appointments::get, appointments::reschedule,
        appointments::cancel, appointments::complete, appointments::no_show, appointments::free,
        appointments::preferences, appointments::set_preferences,
        calendar::create, calendar::list, calendar::revoke, calendar::feed,
        medications::add_medication, medications::history, medications::add_side_effect,
        medications::correlate, medications::correlate_organization,
        consultations::record_consent, consultations::consents, consultations::revoke_consent,
        consultations::refer, consultations::referrals, consultations::shared_record,
        verification::create, verification::list, verification::queue, verification::get,
        verification::cancel, verification::claim, verification::view, verification::progress,
        verification::upload, verification::transcript, verification::settings,
        verification::put_settings,
        telephony::account, telephony::put_account, telephony::call, telephony::escalate,
        telephony::recordings, telephony::play, telephony::status_callback,
        telephony::recording_callback, telephony::inbound_call, telephony::voicemail_callback,
        telephony::reminder_answer,
        voicemail::list, voicemail::get, voicemail::play,
        research::summary, assistant::send, assistant::history, voice::transcribe, voice::speak,
        fhir::metadata, fhir::smart_configuration, fhir::patient::search, fhir::patient::create,
        fhir::patient::read, fhir::patient::update, fhir::patient::delete,
        fhir::appointment::search, fhir::appointment::create, fhir::appointment::read,
        fhir::appointment::update, fhir::appointment::vread, fhir::patient::vread,
        fhir::audit_event::search, fhir::audit_event::read,
        fhir::clinical::care_teams, fhir::clinical::care_team_read,
        fhir::clinical::medication_statements, fhir::clinical::adverse_events,
        fhir::clinical::medication_statement_read, fhir::clinical::adverse_event_read,
        fhir::clinical::medication_statement_create, fhir::clinical::adverse_event_create,
        fhir::export::kick_off, fhir::export::group_kick_off, fhir::export::status, fhir::export::cancel, fhir::export::download,
        fhir::task::search, fhir::task::read, fhir::task::bot_view,
        fhir::consultation::consents, fhir::consultation::consent_read,
        fhir::consultation::service_requests, fhir::consultation::service_request_read,
        fhir::consultation::consent_create, fhir::consultation::consent_update, fhir::consultation::refer,
        fhir::practitioner::search, fhir::practitioner::read,
    ),
    components(schemas(Problem, ProblemField, fhir::Resource, fhir::OperationOutcome)),
    modifiers(&BearerAuth, &IdempotencyKeys, &CommonErrors, &AccessRules),
    tags((name = "auth", description = "Local accounts and sessions"),
         (name = "patients", description = "Patient records of the caller's organization"),
         (name = "appointments", description = "Appointments, availability and reminder preferences"),
         (name = "medications", description = "Medication statements, side effects and their correlation"),
         (name = "consultations", description = "Consents, referrals and shared records"),
         (name = "verification", description = "Prior-authorization calls: staff tasks and bot sessions"),
         (name = "telephony", description = "Calls placed for verification tasks, their recordings, and the provider's signed callbacks"),
         (name = "assistant", description = "The AI assistant (off without both BAAs)"),
         (name = "audit", description = "The audit trail and patients' accounting of disclosures"),
         (name = "fhir", description = "FHIR R4 (4.0.1), application/fhir+json; errors are OperationOutcome"),
         (name = "health", description = "Liveness and readiness"),
         (name = "operations", description = "Operating the deployment (kill switch)")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The optional `Idempotency-Key` header on the creating operations that
/// honour it ([`crate::http::idempotency::RESOURCES`]).
struct IdempotencyKeys;

impl Modify for IdempotencyKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, ResponseBuilder, Type};
        for (path, keeps) in crate::http::idempotency::RESOURCES {
            let Some(op) = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| item.post.as_mut())
            else {
                continue;
            };
            let replay = if *keeps {
                "the same key with the same request within 24 hours gets the first answer again (`Idempotent-Replayed: true`)"
            } else {
                "the same key with the same request within 24 hours is 409 (the answer holds a credential and is never kept)"
            };
            let param = ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(format!(
                    "Makes a retry safe: {replay}; with another request it is 422, while the first still runs 409, and when the first committed but its answer was lost 303 to what it created. 1-255 visible characters, optionally quoted."
                )))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).max_length(Some(257))))
                .build();
            op.parameters
                .get_or_insert_with(Vec::new)
                .push(param.into());
            op.responses.responses.entry("303".to_owned()).or_insert_with(|| {
                ResponseBuilder::new()
                    .description("a request with this Idempotency-Key committed but its answer was lost: see Location")
                    .build()
                    .into()
            });
        }
    }
}

/// The problem responses any operation may give, added where an
/// operation does not describe its own: malformed input, credentials,
/// permissions, absence, method, size, media type, validation, rate limit,
/// failure and unavailability (kill switch, database).
struct CommonErrors;

const COMMON_ERRORS: &[(&str, &str)] = &[
    ("400", "malformed body or query"),
    ("401", "missing or invalid credentials"),
    ("403", "not allowed"),
    ("404", "no such resource (or another organization's)"),
    (
        "409",
        "conflict with the current state, or a request with the same Idempotency-Key still running",
    ),
    ("405", "method not allowed on this resource"),
    ("413", "body too large"),
    ("415", "body is not JSON"),
    ("422", "validation failed"),
    ("429", "rate limited (see Retry-After)"),
    ("431", "request headers too large"),
    ("500", "internal error"),
    (
        "503",
        "unavailable: dependency down, not ready, or kill switch on (see Retry-After)",
    ),
];

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for (path, item) in &mut openapi.paths.paths {
            // FHIR answers errors as OperationOutcome (crate::fhir::outcome).
            let (media, schema) = if path.starts_with(crate::fhir::PREFIX) {
                ("application/fhir+json", "OperationOutcome")
            } else {
                ("application/problem+json", "Problem")
            };
            let ops = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                for (code, description) in COMMON_ERRORS {
                    let response = op
                        .responses
                        .responses
                        .entry((*code).to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(*description)
                                .content(
                                    media,
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name(schema)))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                    // One the operation declares for its body alone.
                    if let utoipa::openapi::RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        (*description).clone_into(&mut response.description);
                    }
                }
            }
        }
    }
}

/// Each operation's access rule from [`crate::http::access::ROUTES`], as
/// `x-carapace-access` (`public`, `signed-in`, or the permission's name)
/// and a line of its description, so clients see what every call needs;
/// every operation that is not public asks for the bearer scheme.
struct AccessRules;

/// The `x-carapace-access` value of a rule.
pub fn access_label(rule: crate::http::access::Access) -> String {
    use crate::http::access::Access;
    match rule {
        Access::Public => "public".to_owned(),
        Access::SignedIn => "signed-in".to_owned(),
        Access::Needs(p) => p.as_str().to_owned(),
    }
}

impl Modify for AccessRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::extensions::ExtensionsBuilder;
        use utoipa::openapi::security::SecurityRequirement;
        for (method, path, rule) in crate::http::access::ROUTES {
            let Some(item) = openapi.paths.paths.get_mut(*path) else {
                continue;
            };
            let op = match *method {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                "PUT" => item.put.as_mut(),
                "PATCH" => item.patch.as_mut(),
                "DELETE" => item.delete.as_mut(),
                _ => None,
            };
            let Some(op) = op else { continue };
            if *rule != crate::http::access::Access::Public {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
            let label = access_label(*rule);
            let stamp = ExtensionsBuilder::new()
                .add("x-carapace-access", label.clone())
                .build();
            match op.extensions.as_mut() {
                Some(e) => e.merge(stamp),
                None => op.extensions = Some(stamp),
            }
            let line = format!("Access: `{label}`.");
            op.description = Some(match op.description.take() {
                Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
                _ => line,
            });
        }
    }
}

/// Registers `/openapi.json`, `/docs` and `/docs/…`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header(("Location", "/docs/"))
                .finish()
        }),
    )
    .service(
        SwaggerUi::new("/docs/{_:.*}")
            .url("/openapi.json", ApiDoc::openapi())
            .config(Config::default().validator_url("none")),
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use utoipa::OpenApi as _;

    /// Every operation of the document: (method, path) → operation id.
    fn operations() -> BTreeMap<(String, String), Option<String>> {
        let doc = super::ApiDoc::openapi();
        let mut out = BTreeMap::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if let Some(op) = op {
                    out.insert((method.to_owned(), path.clone()), op.operation_id.clone());
                }
            }
        }
        out
    }

    /// `openapi.json` at the top of the repository is the document the
    /// server serves at `/openapi.json`, so clients are generated from
    /// what runs (`just client`). Regenerate it with `just openapi`.
    #[test]
    fn the_committed_openapi_document_is_the_served_one() {
        let served = super::ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| panic!("{e}"));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
        if std::env::var_os("CARAPACE_WRITE_OPENAPI").is_some() {
            std::fs::write(path, format!("{served}\n")).unwrap_or_else(|e| panic!("{e}"));
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed.trim_end() == served,
            "openapi.json differs from the served document: run `just openapi`"
        );
    }

    /// OpenAPI requires a description on every response: each problem
    /// an operation may answer says what it means.
    #[test]
    fn every_problem_response_is_described() {
        let doc = super::ApiDoc::openapi();
        let mut problems = 0;
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                for (code, response) in &op.responses.responses {
                    if let utoipa::openapi::RefOr::T(response) = response
                        && !code.starts_with('2')
                        && !code.starts_with('3')
                    {
                        problems += 1;
                        assert!(
                            !response.description.trim().is_empty(),
                            "{path} {code} has no description"
                        );
                    }
                }
            }
        }
        assert!(problems > 700, "{problems} problem responses");
    }

    /// Client generators name a method after each operation id: each is
    /// given (not the handler's name), unique, and `<resource>_<action>`
    /// in lower snake case.
    #[test]
    fn operation_ids_are_unique_and_named_for_their_resource() {
        let ops = operations();
        assert!(ops.len() >= 70, "{} operations", ops.len());
        let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
        for ((method, path), id) in &ops {
            let id = id
                .clone()
                .unwrap_or_else(|| panic!("{method} {path} has no operation id"));
            assert!(
                id.contains('_')
                    && id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{method} {path}: {id}"
            );
            if let Some(first) = seen.insert(id.clone(), (method.clone(), path.clone())) {
                panic!("{id} names both {first:?} and {method} {path}");
            }
        }
        // A few that clients already call by name.
        for (method, path, id) in [
            ("GET", "/api/v1/patients/{id}", "patients_get"),
            ("GET", "/api/v1/patients", "patients_list"),
            ("GET", "/api/v1/appointments", "appointments_list"),
            ("POST", "/api/v1/auth/login", "auth_login"),
        ] {
            assert_eq!(
                ops.get(&(method.to_owned(), path.to_owned()))
                    .cloned()
                    .flatten()
                    .as_deref(),
                Some(id)
            );
        }
    }
}
