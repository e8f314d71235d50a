//! `Consent` ← [`carapace_clinical::consultation::Consent`] and
//! `ServiceRequest` ← [`carapace_clinical::consultation::Referral`]
//! (read only: consents and referrals are made through the REST API).
//!
//! A consent permits its recipient, a clinician named by identifier
//! ([`SUBJECT_SYSTEM`]) with their organization as assigner
//! ([`ORG_SYSTEM`]), to read the consented sections of the record until it
//! ends; each section is a `provision.code` ([`SECTION_SYSTEM`]) and the
//! resource types it covers are `provision.class`. A referral's patient is
//! `Patient/<id>` in the patient's organization; the receiving side, where
//! that patient is no resource, names it by identifier ([`PATIENT_SYSTEM`]).

use carapace_clinical::consultation::{Consent, Referral, Section};
use carapace_tenancy::{OrgId, SubjectId};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::appointment::SUBJECT_SYSTEM;
use super::instant;

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
