//! `AuditEvent` ← [`carapace_audit::AuditEvent`] (read only): who
//! (`agent`, by subject identifier), what (`subtype`: the Carapace action,
//! `action`: its FHIR C/R/U/D/E), on what (`entity`), when, from where,
//! with what outcome. Like the trail itself it names resources and PHI
//! fields, never PHI values.

use carapace_audit::{ActionKind, AuditEvent, Outcome};
use serde_json::{Map, Value, json};

use super::appointment::SUBJECT_SYSTEM;
use super::instant;

/// The code system of Carapace audit actions (`AuditEvent.subtype`).
pub const ACTION_SYSTEM: &str = "urn:carapace:audit-action";

/// The FHIR outcome code of an outcome (0 success, 4 minor failure: a
/// refusal or a miss, 8 serious failure).
pub fn outcome_code(o: Outcome) -> &'static str {
    match o {
        Outcome::Allowed => "0",
        Outcome::Denied | Outcome::NotFound => "4",
        Outcome::Error => "8",
    }
}

/// The FHIR JSON of `e`.
pub fn to_fhir(e: &AuditEvent) -> Value {
    let mut agent = json!({
        "who": {"identifier": {"system": SUBJECT_SYSTEM, "value": e.actor.as_str()}},
        "requestor": e.acting_for.is_none(),
    });
    if let Some(ip) = &e.origin.client_ip {
        agent["network"] = json!({"address": ip, "type": "2"});
    }
    let mut agents = vec![agent];
    if let Some(admin) = &e.acting_for {
        agents.push(json!({
            "who": {"identifier": {"system": SUBJECT_SYSTEM, "value": admin.as_str()}},
            "requestor": true,
        }));
    }
    let mut entity = Map::new();
    match (e.resource_type.as_str(), &e.resource_id) {
        ("patient", Some(id)) => {
            entity.insert("what".into(), json!({"reference": format!("Patient/{id}")}));
        }
        (kind, Some(id)) => {
            entity.insert(
                "what".into(),
                json!({"identifier": {"system": format!("urn:carapace:{kind}"), "value": id}}),
            );
        }
        (kind, None) => {
            entity.insert("name".into(), kind.into());
        }
    }
    if !e.phi_fields.is_empty() {
        entity.insert(
            "detail".into(),
            json!([{"type": "phi_fields", "valueString": e.phi_fields.join(",")}]),
        );
    }
    let mut out = Map::new();
    out.insert("resourceType".into(), "AuditEvent".into());
    out.insert("id".into(), e.id.to_string().into());
    out.insert(
        "type".into(),
        json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"}),
    );
    out.insert(
        "subtype".into(),
        json!([{"system": ACTION_SYSTEM, "code": e.action}]),
    );
    out.insert("action".into(), ActionKind::of(&e.action).code().into());
    out.insert("recorded".into(), instant(e.at).into());
    out.insert("outcome".into(), outcome_code(e.outcome).into());
    out.insert("outcomeDesc".into(), e.outcome.as_str().into());
    out.insert("agent".into(), agents.into());
    let mut source = json!({"observer": {"display": "Carapace"}});
    if let Some(request) = &e.origin.request_id {
        source["site"] = request.as_str().into();
    }
    out.insert("source".into(), source);
    out.insert("entity".into(), json!([entity]));
    Value::Object(out)
}
