//! The record-sharing use cases (ADR 0013): referring a patient under a
//! consent, and the shared record as the receiving clinician reads it.

use carapace_audit::{Access, Outcome, SecurityEventSink};
use carapace_auth::policy::Permission;
use carapace_tenancy::{OrganizationRepository, StorageError, TenancyError};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ConsultationRepository, Referral, Section, check_consent, may_refer};
use crate::ClinicalError;
use crate::access::{AuditTrail, Caller, PatientAccess};
use crate::appointment::{Appointment, AppointmentQuery, AppointmentRepository, AppointmentScope};
use crate::medication::{MedicationHistory, MedicationRepository};
use crate::patient::{PageLimit, Patient, PatientId, PatientRepository};

/// The ports record sharing works over.
pub struct RecordSharing<'a, C, O, T, P, A, M> {
    /// Consents and referrals.
    pub consultations: &'a C,
    /// Organizations (their sharing settings).
    pub orgs: &'a O,
    /// Single audit events (the shared reads, in both organizations).
    pub trail: &'a T,
    /// Security events (refusals).
    pub events: &'a dyn SecurityEventSink,
    /// Patients (the demographics section).
    pub patients: &'a P,
    /// Appointments (the appointments section).
    pub appointments: &'a A,
    /// Medications and side effects (the medications section).
    pub medications: &'a M,
}

/// What a referral shares with its clinician at one moment.
#[derive(Clone, Debug)]
pub struct SharedRecord {
    /// The referral, as the patient's organization holds it.
    pub referral: Referral,
    /// The sections the consent lets the clinician read now.
    pub sections: Vec<Section>,
    /// The patient, when `demographics` is shared.
    pub demographics: Option<Patient>,
    /// Their appointments (the first page), when shared.
    pub appointments: Option<Vec<Appointment>>,
    /// Their medications and side effects, when shared.
    pub medications: Option<MedicationHistory>,
}

/// An organization lookup's failure as a clinical one.
fn org_error(e: TenancyError) -> ClinicalError {
    match e {
        TenancyError::Storage(s) => ClinicalError::Storage(s),
        other => ClinicalError::Storage(StorageError::Internal(Box::new(other))),
    }
}

/// The `referral.shared_read` event of referral `id` under `access`.
fn shared_read(
    access: &Access,
    id: Uuid,
    outcome: Outcome,
    detail: String,
) -> carapace_audit::AuditEvent {
    access
        .event(
            "referral.shared_read",
            "referral",
            Some(id.to_string()),
            outcome,
        )
        .with_detail(detail)
}

impl<C, O, T, P, A, M> RecordSharing<'_, C, O, T, P, A, M>
where
    C: ConsultationRepository,
    O: OrganizationRepository,
    T: AuditTrail,
    P: PatientRepository,
    A: AppointmentRepository,
    M: MedicationRepository,
{
    /// Refers `patient` (of the caller's care team) to the clinician named
    /// by `consent`, an active consent of the patient: in the caller's
    /// organization, or another one when both allow external referrals
    /// (`external_referrals_off` otherwise). Recorded on both sides by the
    /// repository.
    pub async fn refer(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        consent: Uuid,
        now: OffsetDateTime,
    ) -> Result<Referral, ClinicalError> {
        let reach = PatientAccess {
            patients: self.patients,
            trail: self.trail,
            events: self.events,
        };
        let access = reach
            .reach(caller, patient, Permission::Consultation, now)
            .await?;
        let consent = self.consultations.consent(access.tenant(), consent).await?;
        check_consent(consent.as_ref(), patient, now)?;
        let Some(consent) = consent else {
            return Err(ClinicalError::NotFound);
        };
        let receiving = self
            .orgs
            .find_by_id(consent.recipient_org)
            .await
            .map_err(org_error)?
            .ok_or(ClinicalError::NotFound)?;
        let org = caller.principal.org();
        may_refer(org, &caller.settings, receiving.id, &receiving.settings)?;
        let referral = Referral {
            id: Uuid::now_v7(),
            org,
            patient,
            consent: consent.id,
            from: caller.principal.subject().clone(),
            to_org: consent.recipient_org,
            to: consent.recipient.clone(),
            created_at: carapace_audit::event::now_micros(),
        };
        self.consultations.refer(&access, &referral).await?;
        Ok(referral)
    }

    /// The record referral `id` shares with the caller at `now`: exactly
    /// the consented sections while the consent is in force and both
    /// organizations allow sharing. Refused (`consent_inactive`,
    /// `external_referrals_off`) and allowed reads are recorded in both
    /// organizations before anything is read (fail closed); the section
    /// reads are recorded at the source by their repositories, under the
    /// caller's name. A referral not addressed to the caller, or gone at
    /// the source, is [`ClinicalError::NotFound`] (recorded on the
    /// caller's side).
    pub async fn read(
        &self,
        caller: &Caller<'_>,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<SharedRecord, ClinicalError> {
        let here = &caller.access;
        let (org, subject) = (caller.principal.org(), caller.principal.subject());
        let Some(incoming) = self.consultations.incoming(here, id).await? else {
            let missing = shared_read(here, id, Outcome::NotFound, String::new());
            self.trail.record(&missing).await?;
            return Err(ClinicalError::NotFound);
        };
        let there = here.in_org(incoming.org);
        let found = self.consultations.shared(there.tenant(), id).await?;
        let Some((referral, consent)) =
            found.filter(|(r, c)| r.to == *subject && r.to_org == org && c.is_for(org, subject))
        else {
            let gone = shared_read(here, id, Outcome::NotFound, "gone at the source".into());
            self.trail.record(&gone).await?;
            return Err(ClinicalError::NotFound);
        };
        let source = self
            .orgs
            .find_by_id(referral.org)
            .await
            .map_err(org_error)?
            .ok_or(ClinicalError::NotFound)?;
        let sections = consent.readable(now);
        let refusal = match may_refer(source.id, &source.settings, org, &caller.settings) {
            Err(e) => Some(e),
            Ok(()) if sections.is_empty() => Some(ClinicalError::Refused {
                code: "consent_inactive",
                detail: "the patient's consent was withdrawn or has expired",
            }),
            Ok(()) => None,
        };
        if let Some(refused) = refusal {
            for side in [here, &there] {
                let why = format!("refused: {}", refused.code());
                self.trail
                    .record(&shared_read(side, id, Outcome::Denied, why))
                    .await?;
            }
            return Err(refused);
        }
        let names: Vec<&str> = sections.iter().map(|s| s.as_str()).collect();
        // Both trails first (fail closed), then the reads.
        for side in [here, &there] {
            let detail = format!(
                "patient {} of org {} for {}: {}",
                referral.patient,
                referral.org,
                subject,
                names.join(", ")
            );
            self.trail
                .record(&shared_read(side, id, Outcome::Allowed, detail))
                .await?;
        }
        let mut record = SharedRecord {
            referral,
            sections: sections.clone(),
            demographics: None,
            appointments: None,
            medications: None,
        };
        let patient = record.referral.patient;
        for section in sections {
            match section {
                Section::Demographics => {
                    record.demographics = self.patients.get(&there, patient).await?;
                }
                Section::Appointments => {
                    let query = AppointmentQuery {
                        scope: AppointmentScope::Patient(patient),
                        from: None,
                        to: None,
                        limit: PageLimit::parse(Some(u32::from(PageLimit::MAX)))?,
                        after: None,
                    };
                    let page = self.appointments.list(&there, &query).await?;
                    record.appointments = Some(page.items);
                }
                Section::Medications => {
                    record.medications = self.medications.history(&there, patient).await?;
                }
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use carapace_auth::Role;
    use carapace_auth::policy::DenyReason;
    use carapace_tenancy::{OrgId, OrgSettings};
    use time::Duration;

    use super::*;
    use crate::access::fakes::{
        FakeAppointments, FakeConsultations, FakeEvents, FakeMedications, FakeOrgs, FakePatients,
        FakeTrail, NOW, block_on, caller, lock, principal, subject,
    };
    use crate::consultation::Consent;

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
        consent: Uuid,
        referral: Uuid,
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
                id: Uuid::now_v7(),
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
                id: Uuid::now_v7(),
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

        fn read_as(&self, who: &str, org: OrgId, id: Uuid) -> Result<SharedRecord, ClinicalError> {
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
        let refer = |who: &str, patient: PatientId, consent: Uuid| {
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
}
