//! `Consent` ⇄ [`carapace_clinical::consultation::Consent`] and
//! `ServiceRequest` ⇄ [`carapace_clinical::consultation::Referral`].
//!
//! A consent permits its recipient, a clinician named by identifier
//! ([`SUBJECT_SYSTEM`]) with their organization as assigner
//! ([`ORG_SYSTEM`]), to read the consented sections of the record until it
//! ends; each section is a `provision.code` ([`SECTION_SYSTEM`]) and the
//! resource types it covers are `provision.class`. A referral's patient is
//! `Patient/<id>` in the patient's organization; the receiving side, where
//! that patient is no resource, names it by identifier ([`PATIENT_SYSTEM`]).

use carapace_clinical::ClinicalError;
use carapace_clinical::consultation::{Consent, ConsentId, ConsentInput, Referral, Section};
use carapace_clinical::patient::PatientId;
use carapace_tenancy::{OrgId, SubjectId};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::appointment::SUBJECT_SYSTEM;
use super::instant;
use super::read::Reader;

/// The identifier system of Carapace organizations.
pub const ORG_SYSTEM: &str = "urn:carapace:organization";
/// The identifier system of a patient of another organization.
pub const PATIENT_SYSTEM: &str = "urn:carapace:patient";
/// The code system of the record sections a consent shares.
pub const SECTION_SYSTEM: &str = "urn:carapace:consent-section";

const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// The FHIR resource types a section covers.
fn classes(section: Section) -> &'static [&'static str] {
    match section {
        Section::Demographics => &["Patient"],
        Section::Appointments => &["Appointment"],
        Section::Medications => &["MedicationStatement", "AdverseEvent"],
    }
}

/// A clinician of `org`, by identifier.
fn clinician(subject: &SubjectId, org: OrgId) -> Value {
    json!({"identifier": {
        "system": SUBJECT_SYSTEM,
        "value": subject.as_str(),
        "assigner": {"identifier": {"system": ORG_SYSTEM, "value": org.to_string()}},
    }})
}

/// A consent as a `Consent`: `active` while in force at `now`, `inactive`
/// once withdrawn or expired; its period ends at the earlier of the two.
pub fn consent(c: &Consent, now: OffsetDateTime) -> Value {
    let end = c.revoked_at.map_or(c.expires_at, |r| r.min(c.expires_at));
    let sections: Vec<Value> = c
        .sections
        .iter()
        .map(|s| json!({"coding": [{"system": SECTION_SYSTEM, "code": s.as_str()}]}))
        .collect();
    let class: Vec<Value> = c
        .sections
        .iter()
        .flat_map(|s| classes(*s))
        .map(|t| json!({"system": RESOURCE_TYPES, "code": t}))
        .collect();
    json!({
        "resourceType": "Consent",
        "id": c.id.to_string(),
        "meta": {"lastUpdated": instant(c.revoked_at.unwrap_or(c.created_at))},
        "status": if c.active(now) { "active" } else { "inactive" },
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
        }]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{}", c.patient)},
        "dateTime": instant(c.created_at),
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN",
        }]},
        "provision": {
            "type": "permit",
            "period": {"start": instant(c.created_at), "end": instant(end)},
            "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                }]},
                "reference": clinician(&c.recipient, c.recipient_org),
            }],
            "class": class,
            "code": sections,
        },
    })
}

/// A referral as a `ServiceRequest` seen from organization `here`: an
/// active order from the referring clinician to the receiving one, resting
/// on its consent.
pub fn service_request(r: &Referral, here: OrgId) -> Value {
    let (subject, consent) = if r.org == here {
        (
            json!({"reference": format!("Patient/{}", r.patient)}),
            json!({"reference": format!("Consent/{}", r.consent)}),
        )
    } else {
        let assigner = json!({"identifier": {"system": ORG_SYSTEM, "value": r.org.to_string()}});
        (
            json!({"identifier": {"system": PATIENT_SYSTEM, "value": r.patient.to_string(), "assigner": assigner}}),
            json!({"identifier": {"system": "urn:carapace:consent", "value": r.consent.to_string(), "assigner": assigner}}),
        )
    };
    json!({
        "resourceType": "ServiceRequest",
        "id": r.id.to_string(),
        "meta": {"lastUpdated": instant(r.created_at)},
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{
            "system": "http://snomed.info/sct",
            "code": "3457005",
            "display": "Patient referral",
        }]}],
        "subject": subject,
        "authoredOn": instant(r.created_at),
        "requester": clinician(&r.from, r.org),
        "performer": [clinician(&r.to, r.to_org)],
        "supportingInfo": [consent],
    })
}

/// A consent a FHIR `Consent` body records: its patient, the consent as a
/// client sends it, and the recipient's organization when the body names
/// one (`provision.actor[0].reference.identifier.assigner`). Only what
/// Carapace keeps is accepted: a privacy consent (`scope`
/// `patient-privacy`) that permits one clinician to read the coded
/// sections until `provision.period.end`.
pub fn consent_from_fhir(
    body: &Value,
) -> Result<(PatientId, ConsentInput, Option<OrgId>), ClinicalError> {
    let path = "Consent";
    let mut r = Reader::default();
    let allowed = [
        "status",
        "scope",
        "category",
        "patient",
        "dateTime",
        "policyRule",
        "provision",
    ];
    let Some(map) = r.resource(body, path, &allowed) else {
        return Err(ClinicalError::Invalid(r.errors));
    };
    if r.string(map, "status", path).as_deref() != Some("active") {
        r.fail("Consent.status", "a new consent is \"active\"");
    }
    let codes = |r: &mut Reader, v: Option<&Value>, at: &str| -> Vec<(String, String)> {
        let Some(c) = v.and_then(|v| r.object(v, at)) else {
            return Vec::new();
        };
        r.known(c, &["coding", "text"], at);
        r.array(c, "coding", at, 8)
            .iter()
            .filter_map(|x| x.as_object())
            .map(|x| {
                let get = |k: &str| {
                    x.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                (get("system"), get("code"))
            })
            .collect()
    };
    let scope = codes(&mut r, map.get("scope"), "Consent.scope");
    if !scope.iter().any(|(_, c)| c == "patient-privacy") {
        r.fail(
            "Consent.scope",
            "Carapace records privacy consents: patient-privacy",
        );
    }
    let categories = r.array(map, "category", path, 2);
    let category_codes: Vec<(String, String)> = categories
        .iter()
        .enumerate()
        .flat_map(|(i, c)| codes(&mut r, Some(c), &format!("Consent.category[{i}]")))
        .collect();
    if !categories.is_empty() && !category_codes.iter().any(|(_, c)| c == "59284-0") {
        r.fail(
            "Consent.category",
            "Carapace records consent documents: LOINC 59284-0",
        );
    }
    if map.contains_key("policyRule")
        && !codes(&mut r, map.get("policyRule"), "Consent.policyRule")
            .iter()
            .any(|(_, c)| c == "OPTIN")
    {
        r.fail(
            "Consent.policyRule",
            "Carapace records opt-in consents: OPTIN",
        );
    }
    let mut input = ConsentInput::default();
    let patient = super::clinical::patient_ref(&mut r, map, "patient", path);
    let mut org = None;
    let at = "Consent.provision";
    match map.get("provision").and_then(|v| r.object(v, at)) {
        None => r.fail(at, "is required: whom it permits, what, until when"),
        Some(p) => {
            r.known(p, &["type", "period", "actor", "code"], at);
            if r.string(p, "type", at).as_deref() != Some("permit") {
                r.fail("Consent.provision.type", "Carapace records permits");
            }
            let period_at = "Consent.provision.period";
            if let Some(period) = p.get("period").and_then(|v| r.object(v, period_at)) {
                r.known(period, &["end"], period_at);
                input.expires_at = r.string(period, "end", period_at).unwrap_or_default();
            }
            let actors = r.array(p, "actor", at, 1);
            let actor_at = "Consent.provision.actor[0].reference.identifier";
            let ident = actors
                .first()
                .and_then(Value::as_object)
                .and_then(|a| a.get("reference"))
                .and_then(|v| v.get("identifier"))
                .and_then(Value::as_object);
            match ident {
                Some(i) if i.get("system").and_then(Value::as_str) == Some(SUBJECT_SYSTEM) => {
                    input.recipient = i
                        .get("value")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let assigner = i.get("assigner").and_then(|a| a.get("identifier"));
                    if let Some(a) = assigner {
                        let named = (a.get("system").and_then(Value::as_str) == Some(ORG_SYSTEM))
                            .then(|| {
                                a.get("value")
                                    .and_then(Value::as_str)
                                    .and_then(super::path_id)
                            })
                            .flatten();
                        match named {
                            Some(u) => org = Some(OrgId::from_uuid(u)),
                            None => r.fail(
                                &format!("{actor_at}.assigner"),
                                "must name the organization by urn:carapace:organization",
                            ),
                        }
                    }
                }
                _ => r.fail(actor_at, "name the clinician by urn:carapace:subject"),
            }
            for (i, code) in r.array(p, "code", at, 3).iter().enumerate() {
                let code_at = format!("Consent.provision.code[{i}]");
                for (system, c) in codes(&mut r, Some(code), &code_at) {
                    if system == SECTION_SYSTEM {
                        input.sections.push(c);
                    } else {
                        r.fail(
                            &code_at,
                            "sections are coded in urn:carapace:consent-section",
                        );
                    }
                }
            }
        }
    }
    match patient {
        Some(p) if r.errors.is_empty() => Ok((p, input, org)),
        _ => Err(ClinicalError::Invalid(r.errors)),
    }
}

/// The FHIR element of a consent's domain field.
pub fn consent_element(field: &str) -> String {
    match field {
        "recipient" | "recipient_org" => "Consent.provision.actor[0].reference.identifier".into(),
        "sections" => "Consent.provision.code".into(),
        "expires_at" => "Consent.provision.period.end".into(),
        other => format!("Consent.{other}"),
    }
}

/// What a `PUT Consent/<id>` asks of `current`: withdrawing it
/// (`status` `inactive` on an active consent) or nothing (the same
/// status); anything else is refused.
pub fn withdraws(
    current: &Consent,
    status: Option<&str>,
    now: OffsetDateTime,
) -> Result<bool, ClinicalError> {
    match (current.active(now), status) {
        (true, Some("inactive")) => Ok(true),
        (true, Some("active")) | (false, Some("inactive")) => Ok(false),
        _ => Err(ClinicalError::Invalid(vec![
            carapace_clinical::FieldError::new(
                "Consent.status",
                "a consent is only withdrawn: active to inactive",
            ),
        ])),
    }
}

/// A referral a FHIR `ServiceRequest` body asks for: the patient
/// (`subject`) and the consent it rests on (`supportingInfo`). Whom it
/// goes to is the consent's recipient; who makes it is the caller.
pub fn referral_from_fhir(body: &Value) -> Result<(PatientId, ConsentId), ClinicalError> {
    let path = "ServiceRequest";
    let mut r = Reader::default();
    let Some(map) = r.resource(
        body,
        path,
        &["status", "intent", "subject", "supportingInfo"],
    ) else {
        return Err(ClinicalError::Invalid(r.errors));
    };
    if r.string(map, "status", path).as_deref() != Some("active") {
        r.fail("ServiceRequest.status", "a new referral is \"active\"");
    }
    if r.string(map, "intent", path).as_deref() != Some("order") {
        r.fail("ServiceRequest.intent", "a referral is an \"order\"");
    }
    let reference = |r: &mut Reader, v: Option<&Value>, at: &str, kind: &str| {
        let id = v
            .and_then(|v| r.object(v, at))
            .and_then(|o| o.get("reference"))
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix(kind))
            .and_then(super::path_id);
        if id.is_none() {
            r.fail(at, &format!("must reference {kind}<id>"));
        }
        id
    };
    let patient = reference(
        &mut r,
        map.get("subject"),
        "ServiceRequest.subject",
        "Patient/",
    );
    let infos = r.array(map, "supportingInfo", path, 1);
    let consent = reference(
        &mut r,
        infos.first(),
        "ServiceRequest.supportingInfo[0]",
        "Consent/",
    );
    match (patient, consent) {
        (Some(p), Some(c)) if r.errors.is_empty() => {
            Ok((PatientId::from_uuid(p), ConsentId::from_uuid(c)))
        }
        _ => Err(ClinicalError::Invalid(r.errors)),
    }
}
