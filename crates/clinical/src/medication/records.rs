//! The medication use cases: a patient's history, one record of it, and
//! recording statements and side-effect reports, each through the
//! patient's reach ([`crate::access::PatientAccess::reach`]).

use carapace_auth::policy::Permission;
use time::OffsetDateTime;

use super::{
    Entry, Medication, MedicationDetails, MedicationHistory, MedicationId, MedicationRepository,
    SideEffect, SideEffectDetails, SideEffectId,
};
use crate::ClinicalError;
use crate::access::{AuditTrail, Caller, PatientAccess};
use crate::patient::{PatientId, PatientRepository};

/// The ports the medication use cases work over.
pub struct MedicationRecords<'a, P, T, M> {
    /// Patients and how a subject relates to one.
    pub patients: &'a P,
    /// Single audit events.
    pub trail: &'a T,
    /// Security events (refusals).
    pub events: &'a dyn carapace_audit::SecurityEventSink,
    /// Medications and side effects.
    pub medications: &'a M,
}

impl<P, T, M> MedicationRecords<'_, P, T, M>
where
    P: PatientRepository,
    T: AuditTrail,
    M: MedicationRepository,
{
    fn reach(&self) -> PatientAccess<'_, P, T> {
        PatientAccess {
            patients: self.patients,
            trail: self.trail,
            events: self.events,
        }
    }

    /// Records a medication statement of `patient` for a caller who may
    /// write the patient (`medication.create`).
    pub async fn record(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        details: &MedicationDetails,
        now: OffsetDateTime,
    ) -> Result<Medication, ClinicalError> {
        let access = self
            .reach()
            .reach(caller, patient, Permission::PatientWrite, now)
            .await?;
        self.medications
            .add_medication(&access, patient, details)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Records a side-effect report of `patient` for a caller who may
    /// report them (the patient, their clinicians: `side_effect.create`).
    pub async fn report(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        details: &SideEffectDetails,
        now: OffsetDateTime,
    ) -> Result<SideEffect, ClinicalError> {
        let access = self
            .reach()
            .reach(caller, patient, Permission::SideEffectReport, now)
            .await?;
        self.medications
            .add_side_effect(&access, patient, details)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// The medications and side effects of `patient`, for a caller who may
    /// read the patient (through [`crate::access::PatientAccess::reach`]).
    pub async fn history(
        &self,
        caller: &Caller<'_>,
        patient: PatientId,
        now: OffsetDateTime,
    ) -> Result<MedicationHistory, ClinicalError> {
        let access = self
            .reach()
            .reach(caller, patient, Permission::PatientRead, now)
            .await?;
        self.medications
            .history(&access, patient)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Medication statement `id`, for a caller who may read its patient:
    /// read as [`Self::history`] reads (the same decision and
    /// `medication.read` event). No such statement in the caller's
    /// organization is [`ClinicalError::NotFound`], recorded.
    pub async fn medication(
        &self,
        caller: &Caller<'_>,
        id: MedicationId,
        now: OffsetDateTime,
    ) -> Result<Medication, ClinicalError> {
        let (meds, _) = self.history_of(caller, Entry::Medication(id), now).await?;
        meds.into_iter()
            .find(|m| m.id == id)
            .ok_or(ClinicalError::NotFound)
    }

    /// Side-effect report `id`, as [`Self::medication`] reads a statement.
    pub async fn side_effect(
        &self,
        caller: &Caller<'_>,
        id: SideEffectId,
        now: OffsetDateTime,
    ) -> Result<SideEffect, ClinicalError> {
        let (_, effects) = self.history_of(caller, Entry::SideEffect(id), now).await?;
        effects
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(ClinicalError::NotFound)
    }

    /// The history of the patient `entry` is about.
    async fn history_of(
        &self,
        caller: &Caller<'_>,
        entry: Entry,
        now: OffsetDateTime,
    ) -> Result<MedicationHistory, ClinicalError> {
        let ctx = caller.principal.tenant();
        let Some(patient) = self.medications.patient_of(&ctx, entry).await? else {
            let (kind, id) = match entry {
                Entry::Medication(id) => ("medication", id.to_string()),
                Entry::SideEffect(id) => ("side_effect", id.to_string()),
            };
            let missing = caller.access.event(
                "medication.read",
                kind,
                Some(id),
                carapace_audit::Outcome::NotFound,
            );
            self.trail.record(&missing).await?;
            return Err(ClinicalError::NotFound);
        };
        self.history(caller, patient, now).await
    }
}
