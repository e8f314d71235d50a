//! `Appointment` ⇄ [`carapace_clinical::appointment::Appointment`].
//!
//! Two participants, both `accepted`: the patient (`Patient/<id>`) and the
//! practitioner, a Carapace subject named by identifier (system
//! [`SUBJECT_SYSTEM`]: subjects such as `oidc:…` are not FHIR ids). The
//! display zone is the extension [`TIME_ZONE_URL`] (UTC when absent).

use carapace_clinical::ClinicalError;
use carapace_clinical::appointment::{Appointment, AppointmentInput, AppointmentStatus};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::instant;
use super::read::Reader;

/// The identifier system of Carapace subjects (practitioners, users).
pub const SUBJECT_SYSTEM: &str = "urn:carapace:subject";
/// The extension carrying an appointment's display time zone (IANA name).
pub const TIME_ZONE_URL: &str = "urn:carapace:fhir:time-zone";

/// The FHIR `Appointment.status` of a state.
pub fn status_code(s: AppointmentStatus) -> &'static str {
    match s {
        AppointmentStatus::Booked => "booked",
        AppointmentStatus::Completed => "fulfilled",
        AppointmentStatus::Cancelled => "cancelled",
        AppointmentStatus::NoShow => "noshow",
    }
}

/// The state a FHIR `Appointment.status` names, if Carapace has it.
pub fn status_of(code: &str) -> Option<AppointmentStatus> {
    [
        AppointmentStatus::Booked,
        AppointmentStatus::Completed,
        AppointmentStatus::Cancelled,
        AppointmentStatus::NoShow,
    ]
    .into_iter()
    .find(|s| status_code(*s) == code)
}

/// The version of an appointment (`meta.versionId`).
pub fn version(a: &Appointment) -> carapace_clinical::patient::Version {
    carapace_clinical::patient::Version::of(a.updated_at)
}

/// The FHIR JSON of `a`.
pub fn to_fhir(a: &Appointment) -> Value {
    let mut out = Map::new();
    out.insert("resourceType".into(), "Appointment".into());
    out.insert("id".into(), a.id.to_string().into());
    out.insert(
        "meta".into(),
        json!({"versionId": version(a).to_string(), "lastUpdated": instant(a.updated_at)}),
    );
    out.insert(
        "extension".into(),
        json!([{"url": TIME_ZONE_URL, "valueString": a.time_zone.as_str()}]),
    );
    out.insert("status".into(), status_code(a.status).into());
    if let Some(reason) = &a.reason {
        out.insert("reasonCode".into(), json!([{"text": reason.expose_phi()}]));
    }
    out.insert("start".into(), instant(a.slot.start()).into());
    out.insert("end".into(), instant(a.slot.end()).into());
    out.insert("created".into(), instant(a.created_at).into());
    out.insert(
        "participant".into(),
        json!([
            {"actor": {"reference": format!("Patient/{}", a.patient)}, "status": "accepted"},
            {"actor": {"identifier": {"system": SUBJECT_SYSTEM, "value": a.practitioner.as_str()}}, "status": "accepted"},
        ]),
    );
    Value::Object(out)
}

/// The booking a FHIR `Appointment` body describes, and its status.
pub fn from_fhir(body: &Value) -> Result<(AppointmentInput, AppointmentStatus), ClinicalError> {
    let mut r = Reader::default();
    let path = "Appointment";
    let Some(map) = r.resource(
        body,
        path,
        &[
            "id",
            "extension",
            "status",
            "reasonCode",
            "start",
            "end",
            "participant",
            "created",
        ],
    ) else {
        return Err(ClinicalError::Invalid(r.errors));
    };
    let status = r.string(map, "status", path);
    let status = status.as_deref().and_then(status_of);
    if status.is_none() {
        r.fail(
            "Appointment.status",
            "must be booked, fulfilled, cancelled or noshow",
        );
    }
    let mut input = AppointmentInput {
        time_zone: "UTC".into(),
        start: r.string(map, "start", path).unwrap_or_default(),
        end: r.string(map, "end", path).unwrap_or_default(),
        ..AppointmentInput::default()
    };
    for (i, ext) in r.array(map, "extension", path, 1).iter().enumerate() {
        let at = format!("Appointment.extension[{i}]");
        if let Some(ext) = r.object(ext, &at) {
            r.known(ext, &["url", "valueString"], &at);
            if r.string(ext, "url", &at).as_deref() == Some(TIME_ZONE_URL) {
                input.time_zone = r.string(ext, "valueString", &at).unwrap_or_default();
            } else {
                r.fail(&format!("{at}.url"), "only the time-zone extension is kept");
            }
        }
    }
    for (i, reason) in r.array(map, "reasonCode", path, 1).iter().enumerate() {
        let at = format!("Appointment.reasonCode[{i}]");
        if let Some(reason) = r.object(reason, &at) {
            r.known(reason, &["text"], &at);
            input.reason = r.string(reason, "text", &at);
        }
    }
    let (mut patient, mut practitioner) = (None, None);
    for (i, p) in r.array(map, "participant", path, 2).iter().enumerate() {
        let at = format!("Appointment.participant[{i}]");
        let Some(p) = r.object(p, &at) else { continue };
        r.known(p, &["actor", "status", "required"], &at);
        let Some(actor) = p
            .get("actor")
            .and_then(|a| r.object(a, &format!("{at}.actor")))
        else {
            r.fail(&format!("{at}.actor"), "is required");
            continue;
        };
        let actor_at = format!("{at}.actor");
        r.known(actor, &["reference", "identifier", "display"], &actor_at);
        if let Some(reference) = r.string(actor, "reference", &actor_at) {
            match reference.strip_prefix("Patient/").map(Uuid::parse_str) {
                Some(Ok(id)) if patient.is_none() => patient = Some(id),
                _ => r.fail(
                    &format!("{actor_at}.reference"),
                    "must be Patient/<id>, once",
                ),
            }
        } else if let Some(ident) = actor.get("identifier") {
            let id_at = format!("{actor_at}.identifier");
            if let Some(ident) = r.object(ident, &id_at) {
                r.known(ident, &["system", "value"], &id_at);
                let system = r.string(ident, "system", &id_at);
                match (system.as_deref(), r.string(ident, "value", &id_at)) {
                    (Some(SUBJECT_SYSTEM), Some(v)) if practitioner.is_none() => {
                        practitioner = Some(v);
                    }
                    _ => r.fail(
                        &id_at,
                        "a practitioner is named once, by urn:carapace:subject",
                    ),
                }
            }
        } else {
            r.fail(&actor_at, "needs a reference or an identifier");
        }
    }
    match patient {
        Some(id) => input.patient_id = id,
        None => r.fail(
            "Appointment.participant",
            "a Patient participant is required",
        ),
    }
    match practitioner {
        Some(p) => input.practitioner = p,
        None => r.fail(
            "Appointment.participant",
            "a practitioner participant is required",
        ),
    }
    match status {
        Some(status) if r.errors.is_empty() => Ok((input, status)),
        _ => Err(ClinicalError::Invalid(r.errors)),
    }
}

/// The FHIR element of a booking's domain field.
pub fn element_of(field: &str) -> String {
    match field {
        "start" => "Appointment.start".into(),
        "end" => "Appointment.end".into(),
        "time_zone" => "Appointment.extension".into(),
        "reason" => "Appointment.reasonCode[0].text".into(),
        "practitioner" | "patient_id" => "Appointment.participant".into(),
        other => format!("Appointment.{other}"),
    }
}
