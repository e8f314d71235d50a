//! Record sharing against in-memory ports, as the wrong clinician,
//! organization or consent would probe it.

use carapace_auth::Role;
use carapace_auth::policy::DenyReason;
use carapace_tenancy::{OrgId, OrgSettings};
use time::Duration;

use carapace_audit::Outcome;

use super::fakes::{
    FakeEvents, FakePatients, FakeTrail, NOW, block_on, caller, lock, principal, subject,
};
use super::stores::{FakeAppointments, FakeConsultations, FakeMedications, FakeOrgs};
use crate::ClinicalError;
use crate::consultation::{Consent, ConsentId, ReferralId};
use crate::consultation::{RecordSharing, Referral, Section, SharedRecord};
use crate::patient::PatientId;

#[derive(Default)]
struct World {
    consultations: FakeConsultations,
    orgs: FakeOrgs,
    trail: FakeTrail,
    events: FakeEvents,
    patients: FakePatients,
    appointments: FakeAppointments,
    medications: FakeMedications,
}

type Sharing<'a> = RecordSharing<
    'a,
    FakeConsultations,
    FakeOrgs,
    FakeTrail,
    FakePatients,
    FakeAppointments,
    FakeMedications,
>;

/// A patient of `source` referred under a consent sharing `sections`
/// with `dr-bob` of `receiving`.
struct Case {
    source: OrgId,
    receiving: OrgId,
    patient: PatientId,
    consent: ConsentId,
    referral: ReferralId,
}

fn on() -> OrgSettings {
    OrgSettings {
        external_referrals: true,
        ..OrgSettings::default()
    }
}

impl World {
    fn sharing(&self) -> Sharing<'_> {
        RecordSharing {
            consultations: &self.consultations,
            orgs: &self.orgs,
            trail: &self.trail,
            events: &self.events,
            patients: &self.patients,
            appointments: &self.appointments,
            medications: &self.medications,
        }
    }

    fn case(&self, sections: &[Section]) -> Case {
        let (source, receiving) = (self.orgs.add(on()), self.orgs.add(on()));
        let patient = self.patients.add(source);
        self.patients.join(patient, "dr-ada");
        let consent = Consent {
            id: ConsentId::generate(),
            patient,
            recipient_org: receiving,
            recipient: subject("dr-bob"),
            sections: sections.to_vec(),
            expires_at: NOW + Duration::days(7),
            revoked_at: None,
            recorded_by: subject("dr-ada"),
            created_at: NOW,
        };
        let referral = Referral {
            id: ReferralId::generate(),
            org: source,
            patient,
            consent: consent.id,
            from: subject("dr-ada"),
            to_org: receiving,
            to: subject("dr-bob"),
            created_at: NOW,
        };
        let case = Case {
            source,
            receiving,
            patient,
            consent: consent.id,
            referral: referral.id,
        };
        lock(&self.consultations.consents).insert(consent.id, (source, consent));
        lock(&self.consultations.referrals).insert(referral.id, referral);
        case
    }

    fn read_as(
        &self,
        who: &str,
        org: OrgId,
        id: ReferralId,
    ) -> Result<SharedRecord, ClinicalError> {
        let p = principal(who, org, &[Role::Clinician]);
        let settings = lock(&self.orgs.orgs).get(&org).copied().unwrap_or_default();
        block_on(self.sharing().read(&caller(&p, settings), id, NOW))
    }

    /// The `referral.shared_read` events: (organization, outcome, detail).
    fn trail(&self) -> Vec<(OrgId, Outcome, String)> {
        lock(&self.trail.events)
            .iter()
            .map(|e| (e.org, e.outcome, e.detail.clone().unwrap_or_default()))
            .collect()
    }
}

#[test]
fn the_receiving_clinician_reads_exactly_the_consented_sections() {
    let w = World::default();
    let case = w.case(&[Section::Medications]);
    let record = w.read_as("dr-bob", case.receiving, case.referral);
    let record = record.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(record.sections, vec![Section::Medications]);
    assert!(record.medications.is_some());
    assert!(record.demographics.is_none() && record.appointments.is_none());
    // Both trails first, then the section read at the source only.
    let trail = w.trail();
    assert_eq!(trail.len(), 2);
    assert_eq!((trail[0].0, trail[0].1), (case.receiving, Outcome::Allowed));
    assert_eq!((trail[1].0, trail[1].1), (case.source, Outcome::Allowed));
    assert!(trail[0].2.ends_with("for dr-bob: medications"));
    assert_eq!(*lock(&w.medications.reads), vec![case.source]);
    assert!(lock(&w.patients.touched).is_empty());
}

#[test]
fn a_withdrawn_consent_is_refused_in_both_organizations_before_any_read() {
    let w = World::default();
    let case = w.case(&[Section::Demographics, Section::Medications]);
    if let Some((_, c)) = lock(&w.consultations.consents).get_mut(&case.consent) {
        c.revoked_at = Some(NOW - Duration::minutes(1));
    }
    let refused = w.read_as("dr-bob", case.receiving, case.referral);
    assert_eq!(refused.err().map(|e| e.code()), Some("consent_inactive"));
    let trail = w.trail();
    assert_eq!(
        trail,
        vec![
            (
                case.receiving,
                Outcome::Denied,
                "refused: consent_inactive".into()
            ),
            (
                case.source,
                Outcome::Denied,
                "refused: consent_inactive".into()
            ),
        ]
    );
    assert!(lock(&w.medications.reads).is_empty());
    assert!(lock(&w.patients.touched).is_empty());
}

#[test]
fn either_organization_turning_sharing_off_stops_it() {
    let w = World::default();
    let case = w.case(&[Section::Demographics]);
    lock(&w.orgs.orgs).insert(case.source, OrgSettings::default());
    let refused = w.read_as("dr-bob", case.receiving, case.referral);
    assert_eq!(
        refused.err().map(|e| e.code()),
        Some("external_referrals_off")
    );
    assert!(w.trail().iter().all(|t| t.1 == Outcome::Denied));
    assert!(lock(&w.patients.touched).is_empty());
}

#[test]
fn nobody_else_reaches_a_referral() {
    let w = World::default();
    let case = w.case(&[Section::Demographics]);
    // A colleague of the recipient, and a namesake in another
    // organization.
    let colleague = w.read_as("dr-carol", case.receiving, case.referral);
    let namesake = w.read_as("dr-bob", OrgId::generate(), case.referral);
    let at_source = w.read_as("dr-bob", case.source, case.referral);
    for answer in [colleague, namesake, at_source] {
        assert!(matches!(answer, Err(ClinicalError::NotFound)));
    }
    assert!(w.trail().iter().all(|t| t.1 == Outcome::NotFound));
    assert!(lock(&w.patients.touched).is_empty());
}

#[test]
fn a_consent_for_someone_else_is_gone_at_the_source() {
    let w = World::default();
    let case = w.case(&[Section::Demographics]);
    if let Some((_, c)) = lock(&w.consultations.consents).get_mut(&case.consent) {
        c.recipient = subject("dr-mallory");
    }
    let answer = w.read_as("dr-bob", case.receiving, case.referral);
    assert!(matches!(answer, Err(ClinicalError::NotFound)));
    assert_eq!(w.trail()[0].2, "gone at the source");
}

#[test]
fn referrals_need_the_care_team_an_active_consent_and_both_organizations() {
    let w = World::default();
    let case = w.case(&[Section::Demographics]);
    let refer = |who: &str, patient: PatientId, consent: ConsentId| {
        let p = principal(who, case.source, &[Role::Clinician]);
        block_on(w.sharing().refer(&caller(&p, on()), patient, consent, NOW))
    };
    assert!(matches!(
        refer("dr-eve", case.patient, case.consent),
        Err(ClinicalError::Denied(DenyReason::NoRelationship(_)))
    ));
    let other = w.patients.add(case.source);
    w.patients.join(other, "dr-ada");
    assert!(matches!(
        refer("dr-ada", other, case.consent),
        Err(ClinicalError::Invalid(e)) if e[0].field == "consent_id"
    ));
    lock(&w.orgs.orgs).insert(case.receiving, OrgSettings::default());
    assert_eq!(
        refer("dr-ada", case.patient, case.consent)
            .err()
            .map(|e| e.code()),
        Some("external_referrals_off")
    );
    assert!(lock(&w.consultations.made).is_empty());
    lock(&w.orgs.orgs).insert(case.receiving, on());
    let made = refer("dr-ada", case.patient, case.consent);
    let made = made.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((made.to_org, made.to.as_str()), (case.receiving, "dr-bob"));
    assert_eq!(lock(&w.consultations.made).len(), 1);
}
