//! `CareTeam`, `MedicationStatement` and `AdverseEvent` ⇄ the patient's
//! care team (read only), medications and side effects (read and
//! recorded).

use carapace_clinical::ClinicalError;
use carapace_clinical::medication::{
    Medication, MedicationDetails, MedicationInput, SideEffect, SideEffectInput,
};
use carapace_clinical::patient::{CareRole, PatientId};
use carapace_tenancy::SubjectId;
use serde_json::{Map, Value, json};

use super::read::Reader;

use super::appointment::SUBJECT_SYSTEM;
use super::{date, instant};

/// The code system of side-effect severities.
pub const SEVERITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/adverse-event-severity";

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

/// The FHIR status of a statement with `details` on `today`: `active`
/// until its last day, then `completed`.
pub fn medication_status(details: &MedicationDetails, today: time::Date) -> &'static str {
    match &details.stopped_on {
        Some(end) if *end.expose_phi() < today => "completed",
        _ => "active",
    }
}

/// A medication as a `MedicationStatement` (the dose as the dosage's text,
/// the schedule as its timing).
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
        "status": medication_status(d, today),
        "medicationCodeableConcept": {"text": d.drug_name.expose_phi()},
        "subject": {"reference": format!("Patient/{}", m.patient)},
        "effectivePeriod": period,
        "dateAsserted": instant(m.created_at),
        "dosage": [{"text": d.dose.expose_phi(), "timing": {"code": {"text": d.schedule.expose_phi()}}}],
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
            "system": SEVERITY_SYSTEM,
            "code": d.severity.expose_phi().as_str(),
        }]},
    })
}

/// The text of the `CodeableConcept` member `key` (text only: Carapace
/// keeps no codes for it).
fn concept_text(r: &mut Reader, map: &Map<String, Value>, key: &str, path: &str) -> String {
    let at = format!("{path}.{key}");
    match map.get(key).and_then(|v| r.object(v, &at)) {
        Some(c) => {
            r.known(c, &["text"], &at);
            r.string(c, "text", &at).unwrap_or_default()
        }
        None => {
            r.fail(&at, "is required");
            String::new()
        }
    }
}

/// The patient the reference member `key` names (`Patient/<id>`).
pub(super) fn patient_ref(
    r: &mut Reader,
    map: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Option<PatientId> {
    let at = format!("{path}.{key}");
    let reference = map.get(key).and_then(|v| r.object(v, &at)).and_then(|o| {
        r.known(o, &["reference", "display"], &at);
        r.string(o, "reference", &at)
    });
    let id = reference
        .as_deref()
        .and_then(|s| s.strip_prefix("Patient/"))
        .and_then(super::path_id)
        .map(PatientId::from_uuid);
    if id.is_none() {
        r.fail(&at, "must reference the patient: Patient/<id>");
    }
    id
}

fn done<T>(r: Reader, value: Option<T>) -> Result<T, ClinicalError> {
    match value {
        Some(v) if r.errors.is_empty() => Ok(v),
        _ => Err(ClinicalError::Invalid(r.errors)),
    }
}

/// The statement a `MedicationStatement` body records, for its patient,
/// and the status it claims (checked against the dates once parsed:
/// [`medication_status`]).
pub fn medication_from_fhir(
    body: &Value,
) -> Result<(PatientId, MedicationInput, String), ClinicalError> {
    let path = "MedicationStatement";
    let mut r = Reader::default();
    let allowed = [
        "status",
        "medicationCodeableConcept",
        "subject",
        "effectivePeriod",
        "dosage",
        "dateAsserted",
    ];
    let Some(map) = r.resource(body, path, &allowed) else {
        return Err(ClinicalError::Invalid(r.errors));
    };
    let status = r.string(map, "status", path);
    if !matches!(status.as_deref(), Some("active" | "completed")) {
        r.fail("MedicationStatement.status", "must be active or completed");
    }
    let mut input = MedicationInput {
        drug_name: concept_text(&mut r, map, "medicationCodeableConcept", path),
        ..MedicationInput::default()
    };
    let patient = patient_ref(&mut r, map, "subject", path);
    let period_at = "MedicationStatement.effectivePeriod";
    match map
        .get("effectivePeriod")
        .and_then(|v| r.object(v, period_at))
    {
        Some(period) => {
            r.known(period, &["start", "end"], period_at);
            input.started_on = r.string(period, "start", period_at).unwrap_or_default();
            input.stopped_on = r.string(period, "end", period_at);
        }
        None => r.fail(period_at, "is required (its start at least)"),
    }
    let dosages = r.array(map, "dosage", path, 1);
    match dosages.first() {
        Some(dosage) => {
            let at = "MedicationStatement.dosage[0]";
            if let Some(d) = r.object(dosage, at) {
                r.known(d, &["text", "timing"], at);
                input.dose = r.string(d, "text", at).unwrap_or_default();
                let timing_at = format!("{at}.timing");
                if let Some(t) = d.get("timing").and_then(|v| r.object(v, &timing_at)) {
                    r.known(t, &["code"], &timing_at);
                    input.schedule = concept_text(&mut r, t, "code", &timing_at);
                }
            }
        }
        None => r.fail(
            "MedicationStatement.dosage",
            "is required: the dose as text, the schedule as timing.code.text",
        ),
    }
    let value = patient.zip(status).map(|(p, s)| (p, input, s));
    done(r, value)
}

/// The report an `AdverseEvent` body records (an `actual` event), for
/// its patient.
pub fn side_effect_from_fhir(body: &Value) -> Result<(PatientId, SideEffectInput), ClinicalError> {
    let path = "AdverseEvent";
    let mut r = Reader::default();
    let allowed = [
        "actuality",
        "event",
        "subject",
        "date",
        "recordedDate",
        "severity",
    ];
    let Some(map) = r.resource(body, path, &allowed) else {
        return Err(ClinicalError::Invalid(r.errors));
    };
    if r.string(map, "actuality", path).as_deref() != Some("actual") {
        r.fail(
            "AdverseEvent.actuality",
            "a side effect that happened is \"actual\"",
        );
    }
    let mut input = SideEffectInput {
        symptom: concept_text(&mut r, map, "event", path),
        onset_on: r.string(map, "date", path).unwrap_or_default(),
        ..SideEffectInput::default()
    };
    let patient = patient_ref(&mut r, map, "subject", path);
    let at = "AdverseEvent.severity";
    if let Some(severity) = map.get("severity").and_then(|v| r.object(v, at)) {
        r.known(severity, &["coding"], at);
        if let Some(coding) = r.array(severity, "coding", at, 1).first() {
            let coding_at = "AdverseEvent.severity.coding[0]";
            if let Some(c) = r.object(coding, coding_at) {
                r.known(c, &["system", "code", "display"], coding_at);
                if r.string(c, "system", coding_at).as_deref() != Some(SEVERITY_SYSTEM) {
                    r.fail(coding_at, "must be coded in adverse-event-severity");
                }
                input.severity = r.string(c, "code", coding_at).unwrap_or_default();
            }
        }
    }
    done(r, patient.map(|p| (p, input)))
}

/// The FHIR element of a statement's or a report's domain field.
pub fn element_of(field: &str) -> String {
    match field {
        "drug_name" => "MedicationStatement.medicationCodeableConcept.text".into(),
        "dose" => "MedicationStatement.dosage[0].text".into(),
        "schedule" => "MedicationStatement.dosage[0].timing.code.text".into(),
        "started_on" => "MedicationStatement.effectivePeriod.start".into(),
        "stopped_on" => "MedicationStatement.effectivePeriod.end".into(),
        "symptom" => "AdverseEvent.event.text".into(),
        "severity" => "AdverseEvent.severity".into(),
        "onset_on" => "AdverseEvent.date".into(),
        other => other.to_owned(),
    }
}
