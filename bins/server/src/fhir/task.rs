//! `Task` ← a prior-authorization verification task (read only, for the
//! staff who manage them): what is asked (`input`), of which patient
//! (`for`), where it stands, and the payer's reference number (`output`).
//! Procedure codes are CPT/HCPCS, carried as the AMA's code system.
//!
//! The calling bot's minimal view ([`bot_task`]) is a `Task` too, with
//! only what verifying needs: the patient as a contained resource (name,
//! birth date, member id; no id of theirs, no contact details), the
//! payer, plan and codes, and the supervisor's number while escalating is
//! allowed.

use carapace_clinical::verification::{BotView, Task, TaskStatus};
use serde_json::{Map, Value, json};

use super::appointment::SUBJECT_SYSTEM;
use super::instant;

/// The FHIR `Task.status` of a task's state.
pub fn status_code(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Pending => "requested",
        TaskStatus::Claimed => "accepted",
        TaskStatus::Calling => "in-progress",
        TaskStatus::Completed => "completed",
        TaskStatus::Failed => "failed",
        TaskStatus::Cancelled => "cancelled",
    }
}

/// The state a FHIR `Task.status` names, if Carapace has it.
pub fn status_of(code: &str) -> Option<TaskStatus> {
    [
        TaskStatus::Pending,
        TaskStatus::Claimed,
        TaskStatus::Calling,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ]
    .into_iter()
    .find(|s| status_code(*s) == code)
}

fn input(name: &str, value: &str) -> Value {
    json!({"type": {"text": name}, "valueString": value})
}

/// The inputs every view of a task holds: payer, phone, plan, codes.
fn inputs(payer: &str, phone: &str, plan: &str, codes: &[String]) -> Vec<Value> {
    let mut inputs = vec![
        input("payer_name", payer),
        input("payer_phone", phone),
        input("plan", plan),
    ];
    for code in codes {
        inputs.push(json!({
            "type": {"text": "procedure_code"},
            "valueCodeableConcept": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]},
        }));
    }
    inputs
}

/// The bot's minimal view as a `Task`.
pub fn bot_task(v: &BotView) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "id": "patient",
        "name": [{"text": v.patient_name.expose_phi()}],
        "birthDate": super::date(*v.birth_date.expose_phi()),
    });
    if let Some(member) = &v.member_id {
        patient["identifier"] =
            json!([{"system": super::patient::MEMBER_ID_SYSTEM, "value": member.expose_phi()}]);
    }
    let mut inputs = inputs(
        v.payer_name.expose_phi(),
        v.payer_phone.expose_phi(),
        v.plan.expose_phi(),
        v.procedure_codes.expose_phi(),
    );
    if let Some(phone) = &v.supervisor_phone {
        inputs.push(input("supervisor_phone", phone.expose_phi()));
    }
    json!({
        "resourceType": "Task",
        "id": v.task_id.to_string(),
        "contained": [patient],
        "status": status_code(v.status),
        "intent": "order",
        "code": {"text": "prior authorization verification call"},
        "for": {"reference": "#patient"},
        "input": inputs,
    })
}

/// The FHIR JSON of `t`.
pub fn to_fhir(t: &Task) -> Value {
    let r = &t.request;
    let inputs = inputs(
        r.payer_name.expose_phi(),
        r.payer_phone.expose_phi(),
        r.plan.expose_phi(),
        r.procedure_codes.expose_phi(),
    );
    let mut out = Map::new();
    out.insert("resourceType".into(), "Task".into());
    out.insert("id".into(), t.id.to_string().into());
    out.insert("meta".into(), json!({"lastUpdated": instant(t.updated_at)}));
    out.insert("status".into(), status_code(t.status).into());
    out.insert("intent".into(), "order".into());
    out.insert(
        "code".into(),
        json!({"text": "prior authorization verification call"}),
    );
    out.insert(
        "for".into(),
        json!({"reference": format!("Patient/{}", r.patient)}),
    );
    out.insert("authoredOn".into(), instant(t.created_at).into());
    out.insert("lastModified".into(), instant(t.updated_at).into());
    out.insert(
        "requester".into(),
        json!({"identifier": {"system": SUBJECT_SYSTEM, "value": t.created_by.as_str()}}),
    );
    if let Some(bot) = &t.claimed_by {
        out.insert(
            "owner".into(),
            json!({"identifier": {"system": SUBJECT_SYSTEM, "value": bot.as_str()}}),
        );
    }
    out.insert("input".into(), inputs.into());
    if let Some(reference) = &t.reference_number {
        out.insert(
            "output".into(),
            json!([{"type": {"text": "reference_number"}, "valueString": reference.expose_phi()}]),
        );
    }
    Value::Object(out)
}
