//! The `CapabilityStatement` (`/metadata`) and the SMART configuration
//! (`/.well-known/smart-configuration`): exactly what is served, no more.

use serde_json::{Value, json};

use super::FHIR_VERSION;

/// The search parameters of `Patient`.
pub const PATIENT_SEARCH: &[(&str, &str, &str)] = &[
    (
        "_id",
        "token",
        "the patient's id (a read: the same audit event)",
    ),
    (
        "identifier",
        "token",
        "the insurance member id: urn:carapace:member-id|<value>, or <value>",
    ),
    (
        "family",
        "string",
        "exact family name; only together with birthdate",
    ),
    (
        "birthdate",
        "date",
        "exact birth date (YYYY-MM-DD); only together with family",
    ),
    (
        "_lastUpdated",
        "date",
        "eq, ge, gt, le or lt a date or an instant (one bound each way)",
    ),
];

/// The search parameters of `Appointment`.
pub const APPOINTMENT_SEARCH: &[(&str, &str, &str)] = &[
    ("patient", "reference", "Patient/<id>"),
    (
        "practitioner",
        "reference",
        "the practitioner's subject (urn:carapace:subject)",
    ),
    (
        "date",
        "date",
        "eq, ge, gt, le or lt a date or an instant (at most two)",
    ),
    ("status", "token", "booked, fulfilled, cancelled or noshow"),
];

/// The search parameters of `AuditEvent`.
pub const AUDIT_EVENT_SEARCH: &[(&str, &str, &str)] = &[
    ("patient", "reference", "Patient/<id>"),
    (
        "agent",
        "reference",
        "the actor's subject (urn:carapace:subject)",
    ),
    (
        "date",
        "date",
        "eq, ge, gt, le or lt a date or an instant (one bound each way)",
    ),
    (
        "action",
        "token",
        "C, R, U, D or E: the kind of access (the Carapace action's verb)",
    ),
    (
        "subtype",
        "token",
        "urn:carapace:audit-action|<action>, e.g. patient.read",
    ),
    ("outcome", "token", "allowed, denied, not_found or error"),
];

fn params(list: &[(&str, &str, &str)]) -> Vec<Value> {
    list.iter()
        .map(|(name, kind, doc)| json!({"name": name, "type": kind, "documentation": doc}))
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
                "searchParam": params(&[("patient", "reference", "Patient/<id> (required; the team's id is the patient's)")]),
            }, {
                "type": "MedicationStatement",
                "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                "searchParam": params(&[("patient", "reference", "Patient/<id> (required)"), ("subject", "reference", "the same as patient")]),
            }, {
                "type": "Task",
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params(&[("status", "token", "requested, accepted, in-progress, completed, failed or cancelled")]),
                "operation": [{
                    "name": "bot-view",
                    "definition": "urn:carapace:fhir:OperationDefinition/Task-bot-view",
                    "documentation": "GET Task/<id>/$bot-view: the calling bot's minimal view of the task it claimed (verification:work)",
                }],
            }, {
                "type": "Consent",
                "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}, {"code": "update"}],
                "searchParam": params(&[("patient", "reference", "Patient/<id> (required)")]),
            }, {
                "type": "ServiceRequest",
                "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                "searchParam": params(&[
                    ("performer:identifier", "token", "urn:carapace:subject|<you>: the referrals you received"),
                    ("requester:identifier", "token", "urn:carapace:subject|<you>: the referrals you made"),
                ]),
            }, {
                "type": "Practitioner",
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params(&[
                    ("identifier", "token", "urn:carapace:subject|<subject>"),
                    ("active", "token", "true or false"),
                ]),
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
                "searchParam": params(&[("subject", "reference", "Patient/<id> (required)"), ("patient", "reference", "the same as subject")]),
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
