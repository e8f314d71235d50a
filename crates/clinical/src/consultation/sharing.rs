//! The record-sharing use cases (ADR 0013): referring a patient under a
//! consent, and the shared record as the receiving clinician reads it.

use carapace_audit::{Access, Outcome, SecurityEventSink};
use carapace_auth::policy::Permission;
use carapace_tenancy::OrganizationRepository;
use time::OffsetDateTime;

use super::{
    Consent, ConsentId, ConsentInput, ConsultationRepository, Referral, ReferralId, Section,
    check_consent, may_refer,
};
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

/// The `referral.shared_read` event of referral `id` under `access`.
fn shared_read(
    access: &Access,
    id: ReferralId,
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
    fn patient_access(&self) -> PatientAccess<'_, P, T> {
        PatientAccess {
            patients: self.patients,
            trail: self.trail,
            events: self.events,
        }
    }

    /// The consents of `patient`, for whoever may manage them
    /// (`consent:manage` and a relationship: the patient themself or their
    /// care team), recorded as `consent.list`.
    pub async fn consents(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        now: OffsetDateTime,
    ) -> Result<Vec<Consent>, ClinicalError> {
        let access = self
            .patient_access()
            .reach(caller, patient, Permission::ConsentManage, now)
            .await?;
        self.consultations
            .consents(&access, patient)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Records `patient`'s consent to share with a clinician of
    /// `recipient_org` (an organization that exists: 422
    /// `recipient_org` otherwise), for whoever may manage the patient's
    /// consents (`consent.create`).
    pub async fn record_consent(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        input: ConsentInput,
        recipient_org: carapace_tenancy::OrgId,
        now: OffsetDateTime,
    ) -> Result<Consent, ClinicalError> {
        let known = self.orgs.find_by_id(recipient_org).await?;
        if known.is_none() {
            return Err(ClinicalError::Invalid(vec![crate::FieldError::new(
                "recipient_org",
                "must be an organization",
            )]));
        }
        let new = input.parse(recipient_org, now)?;
        let access = self
            .patient_access()
            .reach(caller, patient, Permission::ConsentManage, now)
            .await?;
        self.consultations
            .record_consent(&access, patient, &new)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Withdraws `patient`'s consent `id` at `now`, for whoever may manage
    /// the patient's consents (`consent.revoke`); one already withdrawn,
    /// or none, is [`ClinicalError::NotFound`].
    pub async fn revoke_consent(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        id: ConsentId,
        now: OffsetDateTime,
    ) -> Result<(), ClinicalError> {
        let access = self
            .patient_access()
            .reach(caller, patient, Permission::ConsentManage, now)
            .await?;
        if self
            .consultations
            .revoke_consent(&access, patient, id, now)
            .await?
        {
            Ok(())
        } else {
            Err(ClinicalError::NotFound)
        }
    }

    /// Consent `id`, read by whoever may manage its patient's consents (the
    /// same reach as [`Self::consents`]), recorded as `consent.read` on the
    /// patient. A consent of no patient of the caller's organization is
    /// [`ClinicalError::NotFound`], recorded too.
    pub async fn consent(
        &self,
        caller: &Caller<'_>,
        id: ConsentId,
        now: OffsetDateTime,
    ) -> Result<Consent, ClinicalError> {
        let read = |access: &Access, patient: Option<String>, outcome| {
            access
                .event("consent.read", "patient", patient, outcome)
                .with_detail(format!("consent {id}"))
        };
        let Some(consent) = self
            .consultations
            .consent(caller.access.tenant(), id)
            .await?
        else {
            self.trail
                .record(&read(&caller.access, None, Outcome::NotFound))
                .await?;
            return Err(ClinicalError::NotFound);
        };
        let access = self
            .patient_access()
            .reach(caller, consent.patient, Permission::ConsentManage, now)
            .await?;
        let patient = Some(consent.patient.to_string());
        self.trail
            .record(&read(&access, patient, Outcome::Allowed))
            .await?;
        Ok(consent)
    }

    /// The referrals addressed to the caller (`incoming`) or made by them,
    /// recorded as `referral.list`.
    pub async fn referrals(
        &self,
        caller: &Caller<'_>,
        incoming: bool,
    ) -> Result<Vec<Referral>, ClinicalError> {
        self.consultations.referrals(&caller.access, incoming).await
    }

    /// Referral `id`, when the caller made it or it is addressed to them
    /// (`referral.read`); [`ClinicalError::NotFound`] otherwise, whoever
    /// else's it is.
    pub async fn referral(
        &self,
        caller: &Caller<'_>,
        id: ReferralId,
    ) -> Result<Referral, ClinicalError> {
        self.consultations
            .referral(&caller.access, id)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Refers `patient` (of the caller's care team) to the clinician named
    /// by `consent`, an active consent of the patient: in the caller's
    /// organization, or another one when both allow external referrals
    /// (`external_referrals_off` otherwise). Recorded on both sides by the
    /// repository.
    pub async fn refer(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        consent: ConsentId,
        now: OffsetDateTime,
    ) -> Result<Referral, ClinicalError> {
        let access = self
            .patient_access()
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
            .await?
            .ok_or(ClinicalError::NotFound)?;
        let org = caller.principal.org();
        may_refer(org, &caller.settings, receiving.id, &receiving.settings)?;
        let referral = Referral {
            id: ReferralId::generate(),
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
        id: ReferralId,
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
            .await?
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
                        status: None,
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
