//! `Patient` ⇄ [`carapace_clinical::patient::Patient`].
//!
//! Carapace keeps one name (a family name and one given name; several
//! `given` are joined with spaces), the birth date, the gender, one
//! insurance member id (the identifier of system [`MEMBER_ID_SYSTEM`]),
//! one phone and one e-mail. Any other element is refused (422, the
//! element named) rather than silently dropped.

use carapace_clinical::patient::{Demographics, Patient, PatientInput};
use carapace_clinical::{ClinicalError, FieldError};
use serde_json::{Map, Value, json};

use super::read::Reader;
use super::{date, instant};

/// The identifier system of a patient's insurance member id.
pub const MEMBER_ID_SYSTEM: &str = "urn:carapace:member-id";

/// The FHIR JSON of `p`.
pub fn to_fhir(p: &Patient) -> Value {
    let d = &p.demographics;
    let mut out = Map::new();
    out.insert("resourceType".into(), "Patient".into());
    out.insert("id".into(), p.id.to_string().into());
    out.insert(
        "meta".into(),
        json!({"versionId": p.version().to_string(), "lastUpdated": instant(p.updated_at)}),
    );
    if let Some(m) = &d.member_id {
        out.insert(
            "identifier".into(),
            json!([{"system": MEMBER_ID_SYSTEM, "value": m.expose_phi()}]),
        );
    }
    out.insert(
        "name".into(),
        json!([{"family": d.family_name.expose_phi(), "given": [d.given_name.expose_phi()]}]),
    );
    let mut telecom = Vec::new();
    if let Some(phone) = &d.phone {
        telecom.push(json!({"system": "phone", "value": phone.expose_phi()}));
    }
    if let Some(email) = &d.email {
        telecom.push(json!({"system": "email", "value": email.expose_phi()}));
    }
    if !telecom.is_empty() {
        out.insert("telecom".into(), telecom.into());
    }
    if let Some(sex) = &d.sex {
        out.insert("gender".into(), sex.expose_phi().as_str().into());
    }
    out.insert("birthDate".into(), date(*d.birth_date.expose_phi()).into());
    Value::Object(out)
}

/// Where each domain field lives in a `Patient`.
struct Paths {
    member_id: String,
    phone: String,
    email: String,
}

/// The patient input a FHIR `Patient` body carries. `id` is the id the URL
/// names (an update): the body's `id` must match it; a create's body may
/// carry none (the server assigns it).
pub fn from_fhir(body: &Value, id: Option<&str>) -> Result<Incoming, ClinicalError> {
    let mut r = Reader::default();
    let path = "Patient";
    let Some(map) = r.resource(
        body,
        path,
        &[
            "id",
            "identifier",
            "active",
            "name",
            "telecom",
            "gender",
            "birthDate",
        ],
    ) else {
        return Err(ClinicalError::Invalid(r.errors));
    };
    match (map.get("id"), id) {
        (None, _) => {}
        (Some(Value::String(given)), Some(url)) if given == url => {}
        (Some(_), Some(_)) => r.fail("Patient.id", "must be the id in the URL"),
        (Some(_), None) => {}
    }
    if map.get("active").is_some_and(|a| a != &Value::Bool(true)) {
        r.fail(
            "Patient.active",
            "only active records are kept (true or absent)",
        );
    }
    let mut input = PatientInput::default();
    let mut paths = Paths {
        member_id: "Patient.identifier".into(),
        phone: "Patient.telecom".into(),
        email: "Patient.telecom".into(),
    };
    for (i, item) in r.array(map, "identifier", path, 4).iter().enumerate() {
        let at = format!("Patient.identifier[{i}]");
        let Some(ident) = r.object(item, &at) else {
            continue;
        };
        r.known(ident, &["system", "value", "use"], &at);
        if r.string(ident, "system", &at).as_deref() != Some(MEMBER_ID_SYSTEM) {
            r.fail(
                &format!("{at}.system"),
                &format!("only the member id ({MEMBER_ID_SYSTEM}) is kept"),
            );
        } else if input.member_id.is_some() {
            r.fail(&at, "only one member id is kept");
        } else {
            input.member_id = r.string(ident, "value", &at);
            paths.member_id = format!("{at}.value");
        }
    }
    let names = r.array(map, "name", path, 1);
    match names.first() {
        None => r.fail("Patient.name", "a name (family and given) is required"),
        Some(name) => {
            let at = "Patient.name[0]";
            if let Some(name) = r.object(name, at) {
                r.known(name, &["use", "text", "family", "given"], at);
                input.family_name = r.string(name, "family", at).unwrap_or_default();
                let given: Vec<String> = r
                    .array(name, "given", at, 4)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, g)| match g {
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        _ => {
                            r.fail(&format!("{at}.given[{i}]"), "must be a non-empty string");
                            None
                        }
                    })
                    .collect();
                input.given_name = given.join(" ");
            }
        }
    }
    for (i, item) in r.array(map, "telecom", path, 2).iter().enumerate() {
        let at = format!("Patient.telecom[{i}]");
        let Some(point) = r.object(item, &at) else {
            continue;
        };
        r.known(point, &["system", "value", "use"], &at);
        let value = r.string(point, "value", &at);
        match r.string(point, "system", &at).as_deref() {
            Some("phone") if input.phone.is_none() => {
                input.phone = value;
                paths.phone = format!("{at}.value");
            }
            Some("email") if input.email.is_none() => {
                input.email = value;
                paths.email = format!("{at}.value");
            }
            _ => r.fail(&format!("{at}.system"), "one phone and one email are kept"),
        }
    }
    input.sex = r.string(map, "gender", path);
    input.birth_date = r.string(map, "birthDate", path).unwrap_or_default();
    if !r.errors.is_empty() {
        return Err(ClinicalError::Invalid(r.errors));
    }
    Ok(Incoming { input, paths })
}

/// A `Patient` body read, before the domain's rules.
pub struct Incoming {
    input: PatientInput,
    paths: Paths,
}

impl Incoming {
    /// The demographics, by the same rules as every other surface; a
    /// problem names the FHIR element it came from.
    pub fn parse(self, today: time::Date) -> Result<Demographics, ClinicalError> {
        let paths = self.paths;
        self.input.parse(today).map_err(|e| match e {
            ClinicalError::Invalid(errors) => ClinicalError::Invalid(
                errors
                    .into_iter()
                    .map(|f| {
                        let element = match f.field.as_str() {
                            "given_name" => "Patient.name[0].given".to_owned(),
                            "family_name" => "Patient.name[0].family".to_owned(),
                            "birth_date" => "Patient.birthDate".to_owned(),
                            "sex" => "Patient.gender".to_owned(),
                            "member_id" => paths.member_id.clone(),
                            "phone" => paths.phone.clone(),
                            "email" => paths.email.clone(),
                            other => format!("Patient.{other}"),
                        };
                        FieldError::new(element, f.message)
                    })
                    .collect(),
            ),
            other => other,
        })
    }
}
