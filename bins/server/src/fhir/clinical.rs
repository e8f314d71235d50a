//! `CareTeam`, `MedicationStatement` and `AdverseEvent` ← the patient's
//! care team, medications and side effects (read only).

use carapace_clinical::medication::{Medication, SideEffect};
use carapace_clinical::patient::{CareRole, PatientId};
use carapace_tenancy::SubjectId;
use serde_json::{Map, Value, json};

use super::appointment::SUBJECT_SYSTEM;
use super::{date, instant};

/// The patient's care team as a `CareTeam` (its id is the patient's: one
/// team per patient).
pub fn care_team(patient: PatientId, team: &[(SubjectId, CareRole)]) -> Value {
    let mut out = Map::new();
    out.insert("resourceType".into(), "CareTeam".into());
    out.insert("id".into(), patient.to_string().into());
    out.insert("status".into(), "active".into());
    out.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{patient}")}),
    );
    if !team.is_empty() {
        let participants: Vec<Value> = team
            .iter()
            .map(|(subject, role)| {
                json!({
                    "role": [{"text": role.as_str()}],
                    "member": {"identifier": {"system": SUBJECT_SYSTEM, "value": subject.as_str()}},
                })
            })
            .collect();
        out.insert("participant".into(), participants.into());
    }
    Value::Object(out)
}

/// A medication as a `MedicationStatement`: `active` until its last day,
/// then `completed`.
pub fn medication_statement(m: &Medication, today: time::Date) -> Value {
    let d = &m.details;
    let stopped = d.stopped_on.as_ref().map(|s| *s.expose_phi());
    let mut period = json!({"start": date(*d.started_on.expose_phi())});
    if let Some(end) = stopped {
        period["end"] = date(end).into();
    }
    json!({
        "resourceType": "MedicationStatement",
        "id": m.id.to_string(),
        "status": if stopped.is_some_and(|end| end < today) { "completed" } else { "active" },
        "medicationCodeableConcept": {"text": d.drug_name.expose_phi()},
        "subject": {"reference": format!("Patient/{}", m.patient)},
        "effectivePeriod": period,
        "dateAsserted": instant(m.created_at),
        "dosage": [{"text": format!("{}, {}", d.dose.expose_phi(), d.schedule.expose_phi())}],
    })
}

/// A side effect as an `AdverseEvent` (one that happened: `actual`).
pub fn adverse_event(s: &SideEffect) -> Value {
    let d = &s.details;
    json!({
        "resourceType": "AdverseEvent",
        "id": s.id.to_string(),
        "actuality": "actual",
        "event": {"text": d.symptom.expose_phi()},
        "subject": {"reference": format!("Patient/{}", s.patient)},
        "date": date(*d.onset_on.expose_phi()),
        "recordedDate": instant(s.created_at),
        "severity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
            "code": d.severity.expose_phi().as_str(),
        }]},
    })
}
