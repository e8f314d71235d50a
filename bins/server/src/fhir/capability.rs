//! The `CapabilityStatement` (`/metadata`) and the SMART configuration
//! (`/.well-known/smart-configuration`): exactly what is served, no more.

use serde_json::{Value, json};

use super::FHIR_VERSION;

/// A search parameter as the statement declares it and as the search
/// enforces it (`routes::fhir::Params`): what the statement does
/// not name, or names fewer times than a query gives it, is refused.
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    /// The parameter's name.
    pub name: &'static str,
    /// Its FHIR search parameter type (`token`, `date`, `reference`…).
    pub kind: &'static str,
    /// How many times one query may give it.
    pub most: usize,
    /// What it matches, in words.
    pub doc: &'static str,
}

/// The most parameters one query holds (more is refused before any
/// search reads it), so also the most times one parameter may repeat.
pub const QUERY_PARAMS_MAX: usize = 16;

/// A parameter given at most once.
const fn once(name: &'static str, kind: &'static str, doc: &'static str) -> SearchParam {
    SearchParam {
        name,
        kind,
        most: 1,
        doc,
    }
}

/// A date parameter: one lower and one upper bound at most.
const fn bounds(name: &'static str, doc: &'static str) -> SearchParam {
    SearchParam {
        most: 2,
        ..once(name, "date", doc)
    }
}

/// The search parameters of `Patient`.
pub const PATIENT_SEARCH: &[SearchParam] = &[
    once(
        "_id",
        "token",
        "the patient's id (a read: the same audit event)",
    ),
    once(
        "identifier",
        "token",
        "the insurance member id: urn:carapace:member-id|<value>, or <value>",
    ),
    once(
        "family",
        "string",
        "exact family name; only together with birthdate",
    ),
    once(
        "birthdate",
        "date",
        "exact birth date (YYYY-MM-DD); only together with family",
    ),
    bounds(
        "_lastUpdated",
        "eq, ge, gt, le or lt a date or an instant (one bound each way)",
    ),
];

/// The search parameters of `Appointment`.
pub const APPOINTMENT_SEARCH: &[SearchParam] = &[
    once("patient", "reference", "Patient/<id>"),
    once(
        "practitioner",
        "reference",
        "the practitioner's subject (urn:carapace:subject)",
    ),
    bounds(
        "date",
        "eq, ge, gt, le or lt a date or an instant (at most two)",
    ),
    once("status", "token", "booked, fulfilled, cancelled or noshow"),
];

/// The search parameters of `AuditEvent`.
pub const AUDIT_EVENT_SEARCH: &[SearchParam] = &[
    once("patient", "reference", "Patient/<id>"),
    once(
        "agent",
        "reference",
        "the actor's subject (urn:carapace:subject)",
    ),
    bounds(
        "date",
        "eq, ge, gt, le or lt a date or an instant (one bound each way)",
    ),
    once(
        "action",
        "token",
        "C, R, U, D or E: the kind of access (the Carapace action's verb)",
    ),
    once(
        "subtype",
        "token",
        "urn:carapace:audit-action|<action>, e.g. patient.read",
    ),
    once("outcome", "token", "allowed, denied, not_found or error"),
];

/// The search parameters of `CareTeam`.
pub const CARE_TEAM_SEARCH: &[SearchParam] = &[once(
    "patient",
    "reference",
    "Patient/<id> (required; the team's id is the patient's)",
)];

/// The search parameters of `MedicationStatement`.
pub const MEDICATION_STATEMENT_SEARCH: &[SearchParam] = &[
    once("patient", "reference", "Patient/<id> (required)"),
    once("subject", "reference", "the same as patient"),
];

/// The search parameters of `AdverseEvent`.
pub const ADVERSE_EVENT_SEARCH: &[SearchParam] = &[
    once("subject", "reference", "Patient/<id> (required)"),
    once("patient", "reference", "the same as subject"),
];

/// The search parameters of `Task`.
pub const TASK_SEARCH: &[SearchParam] = &[once(
    "status",
    "token",
    "requested, accepted, in-progress, completed, failed or cancelled",
)];

/// The search parameters of `Consent`.
pub const CONSENT_SEARCH: &[SearchParam] =
    &[once("patient", "reference", "Patient/<id> (required)")];

/// The search parameters of `ServiceRequest` (each may repeat; together
/// they narrow).
pub const SERVICE_REQUEST_SEARCH: &[SearchParam] = &[
    SearchParam {
        most: QUERY_PARAMS_MAX,
        ..once(
            "performer:identifier",
            "token",
            "urn:carapace:subject|<you>: the referrals you received",
        )
    },
    SearchParam {
        most: QUERY_PARAMS_MAX,
        ..once(
            "requester:identifier",
            "token",
            "urn:carapace:subject|<you>: the referrals you made",
        )
    },
];

/// The search parameters of `Practitioner`.
pub const PRACTITIONER_SEARCH: &[SearchParam] = &[
    once("identifier", "token", "urn:carapace:subject|<subject>"),
    once("active", "token", "true or false"),
];

fn params(list: &[SearchParam]) -> Vec<Value> {
    list.iter()
        .map(|p| json!({"name": p.name, "type": p.kind, "documentation": p.doc}))
        .collect()
}

/// The capability statement of this server, its FHIR base at `base`.
pub fn statement(base: &str, software_version: &str, published: &str) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "Carapace",
        "kind": "instance",
        "software": {"name": "Carapace", "version": software_version},
        "implementation": {"description": "Carapace FHIR R4 API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": true,
                "service": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }],
                }],
                "description": "Bearer tokens (OAuth 2.0 / OpenID Connect). SMART v2 scopes in the token's scope claim narrow what the roles allow, never widen it; patient/ scopes reach the record linked to the user only. See .well-known/smart-configuration.",
            },
            "resource": [{
                "type": "Patient",
                "versioning": "versioned-update",
                "readHistory": false,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "interaction": [
                    {"code": "read"},
                    {"code": "vread"},
                    {"code": "create"},
                    {"code": "update"},
                    {"code": "delete"},
                    {"code": "search-type"},
                ],
                "searchParam": params(PATIENT_SEARCH),
                "operation": [{
                    "name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
                }],
            }, {
                "type": "Appointment",
                "versioning": "versioned",
                "readHistory": false,
                "updateCreate": false,
                "interaction": [
                    {"code": "read"},
                    {"code": "vread"},
                    {"code": "create"},
                    {"code": "update"},
                    {"code": "search-type"},
                ],
                "searchInclude": ["Appointment:patient"],
                "searchParam": params(APPOINTMENT_SEARCH),
            }, {
                "type": "AuditEvent",
                "versioning": "no-version",
                "readHistory": false,
                "updateCreate": false,
                "interaction": [
                    {"code": "read"},
                    {"code": "search-type"},
                ],
                "searchParam": params(AUDIT_EVENT_SEARCH),
            }, {
                "type": "CareTeam",
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params(CARE_TEAM_SEARCH),
            }, {
                "type": "MedicationStatement",
                "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                "searchParam": params(MEDICATION_STATEMENT_SEARCH),
            }, {
                "type": "Task",
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params(TASK_SEARCH),
                "operation": [{
                    "name": "bot-view",
                    "definition": "urn:carapace:fhir:OperationDefinition/Task-bot-view",
                    "documentation": "GET Task/<id>/$bot-view: the calling bot's minimal view of the task it claimed (verification:work)",
                }],
            }, {
                "type": "Consent",
                "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}, {"code": "update"}],
                "searchParam": params(CONSENT_SEARCH),
            }, {
                "type": "ServiceRequest",
                "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                "searchParam": params(SERVICE_REQUEST_SEARCH),
            }, {
                "type": "Practitioner",
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params(PRACTITIONER_SEARCH),
            }, {
                "type": "Group",
                "operation": [{
                    "name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
                    "documentation": "Group ids: care-team-<patient id> (the patient's compartment) or consent-<consent id> (what the consent shares)",
                }],
            }, {
                "type": "AdverseEvent",
                "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                "searchParam": params(ADVERSE_EVENT_SEARCH),
            }],
        }],
    })
}

/// The SMART configuration: the capabilities and scopes honoured, the
/// Backend Services token endpoint (`token_url`), and the external
/// authorization server where one is configured.
pub fn smart_configuration(token_url: &str, issuer: Option<&str>) -> Value {
    let mut config = json!({
        "token_endpoint": token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": carapace_auth::backend::ALGORITHMS,
        "grant_types_supported": ["client_credentials"],
        "capabilities": [
            "client-confidential-asymmetric",
            "permission-v1",
            "permission-v2",
            "permission-patient",
            "permission-user",
        ],
        "scopes_supported": [
            "system/*.rs",
            "system/Patient.rs",
            "system/Appointment.rs",
            "system/AuditEvent.rs",
            "user/*.cruds",
            "user/Patient.cruds",
            "patient/*.rs",
            "patient/Patient.rs",
        ],
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["token"],
    });
    if let Some(issuer) = issuer {
        let issuer = issuer.trim_end_matches('/');
        config["issuer"] = issuer.into();
        config["authorization_server_metadata"] =
            format!("{issuer}/.well-known/openid-configuration").into();
    }
    config
}
