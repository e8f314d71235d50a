//! Bulk export against in-memory ports, as a caller outside the care team,
//! a withdrawn consent or a kill switch thrown mid-way would meet it: what
//! leaves is read by the same decisions as a read, and every patient whose
//! data leaves is disclosed, never one whose data does not.

use carapace_auth::Role;
use carapace_auth::smart::ResourceType;
use carapace_tenancy::{OrgId, OrgSettings};
use time::Duration;

use super::fakes::{FakeEvents, FakePatients, FakeTrail, NOW, block_on, caller, lock, principal};
use super::stores::FakeMedications;
use crate::ClinicalError;
use crate::consultation::{Consent, ConsentId, Section};
use crate::export::{ExportId, Gathered, Job, Scope, consent_scope, gather};
use crate::medication::MedicationRecords;
use crate::patient::PatientId;

#[derive(Default)]
struct World {
    patients: FakePatients,
    trail: FakeTrail,
    events: FakeEvents,
    medications: FakeMedications,
}

impl World {
    /// Gathers `types` of `patient` as clinician `who` of `org`; `go_on`
    /// answers between reads.
    fn gather_as(
        &self,
        who: &str,
        org: OrgId,
        patient: PatientId,
        types: &[ResourceType],
        go_on: impl Fn() -> Result<(), ClinicalError>,
    ) -> Result<Gathered, ClinicalError> {
        let records = MedicationRecords {
            patients: &self.patients,
            trail: &self.trail,
            events: &self.events,
            medications: &self.medications,
        };
        let p = principal(who, org, &[Role::Clinician]);
        let job = Job {
            id: ExportId::generate(),
            scope: Scope::One(patient),
            types,
            since: None,
        };
        block_on(gather(
            &records,
            &caller(&p, OrgSettings::default()),
            &job,
            NOW,
            go_on,
        ))
    }

    /// The patients disclosed (`patient.export` events), by id.
    fn disclosed(&self) -> Vec<String> {
        lock(&self.trail.events)
            .iter()
            .filter(|e| e.action == "patient.export")
            .filter_map(|e| e.resource_id.clone())
            .collect()
    }
}

const ALL: [ResourceType; 3] = [
    ResourceType::Patient,
    ResourceType::MedicationStatement,
    ResourceType::AdverseEvent,
];

#[test]
fn a_care_team_member_exports_the_patient_and_the_export_is_disclosed() {
    let w = World::default();
    let org = OrgId::generate();
    let patient = w.patients.add(org);
    w.patients.join(patient, "dr-ada");
    let found = w
        .gather_as("dr-ada", org, patient, &ALL, || Ok(()))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(found.patients.len(), 1);
    assert_eq!(lock(&w.medications.reads).as_slice(), [org]);
    assert_eq!(w.disclosed(), [patient.to_string()]);
}

#[test]
fn a_clinician_outside_the_care_team_exports_nothing_and_nothing_is_disclosed() {
    let w = World::default();
    let org = OrgId::generate();
    let patient = w.patients.add(org);
    w.patients.join(patient, "dr-ada");
    for types in [&ALL[..], &ALL[1..]] {
        let refused = w.gather_as("dr-eve", org, patient, types, || Ok(()));
        assert!(
            matches!(refused, Err(ClinicalError::Denied(_))),
            "{refused:?}"
        );
    }
    assert!(lock(&w.medications.reads).is_empty());
    assert!(w.disclosed().is_empty());
    // Another organization's patient is no patient at all.
    let elsewhere = w.gather_as("dr-ada", OrgId::generate(), patient, &ALL, || Ok(()));
    assert!(
        matches!(elsewhere, Err(ClinicalError::NotFound)),
        "{elsewhere:?}"
    );
    assert!(w.disclosed().is_empty());
}

#[test]
fn a_stop_between_reads_ends_the_export_before_anything_is_disclosed() {
    let w = World::default();
    let org = OrgId::generate();
    let patient = w.patients.add(org);
    w.patients.join(patient, "dr-ada");
    let stopped = w.gather_as("dr-ada", org, patient, &ALL, || {
        Err(ClinicalError::Busy(std::time::Duration::ZERO))
    });
    assert!(
        matches!(stopped, Err(ClinicalError::Busy(_))),
        "{stopped:?}"
    );
    assert!(lock(&w.medications.reads).is_empty());
    assert!(w.disclosed().is_empty());
}

#[test]
fn only_the_demographics_export_reads_the_patient() {
    let w = World::default();
    let org = OrgId::generate();
    let patient = w.patients.add(org);
    w.patients.join(patient, "dr-ada");
    let found = w
        .gather_as("dr-ada", org, patient, &ALL[1..], || Ok(()))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(found.patients.is_empty());
    assert!(lock(&w.patients.reads).is_empty());
    assert_eq!(w.disclosed(), [patient.to_string()]);
}

fn consent(sections: &[Section], revoked: bool) -> Consent {
    Consent {
        id: ConsentId::generate(),
        patient: PatientId::generate(),
        recipient_org: OrgId::generate(),
        recipient: super::fakes::subject("dr-bob"),
        sections: sections.to_vec(),
        expires_at: NOW + Duration::days(7),
        revoked_at: revoked.then_some(NOW - Duration::hours(1)),
        recorded_by: super::fakes::subject("dr-ada"),
        created_at: NOW - Duration::days(1),
    }
}

fn refusal_code(result: Result<(Scope, Vec<ResourceType>), ClinicalError>) -> String {
    match result {
        Err(ClinicalError::Refused { code, .. }) => code.to_owned(),
        Err(ClinicalError::Invalid(fields)) => {
            fields.first().map(|f| f.field.clone()).unwrap_or_default()
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_consent_exports_what_it_shares_now_and_nothing_once_withdrawn() {
    let meds = consent(&[Section::Medications, Section::Appointments], false);
    let (scope, types) = consent_scope(&meds, &ALL, NOW).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(scope, Scope::One(meds.patient));
    assert_eq!(types, ALL[1..]);
    // Asking only for what it does not share names `_type`.
    assert_eq!(refusal_code(consent_scope(&meds, &ALL[..1], NOW)), "_type");
    for inactive in [
        consent(&[Section::Medications], true),
        consent(&[Section::Appointments], false),
    ] {
        assert_eq!(
            refusal_code(consent_scope(&inactive, &ALL, NOW)),
            "consent_inactive"
        );
    }
    let expired = consent(&[Section::Demographics], false);
    let later = expired.expires_at + Duration::seconds(1);
    assert_eq!(
        refusal_code(consent_scope(&expired, &ALL, later)),
        "consent_inactive"
    );
}
