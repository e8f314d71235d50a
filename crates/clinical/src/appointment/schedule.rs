//! The appointment use cases that decide: booking with a care-team
//! practitioner, reaching an appointment through its patient, whose
//! appointments a listing shows, and a practitioner's free slots.

use carapace_audit::{Access, Outcome, SecurityEventSink};
use carapace_auth::policy::{
    Decision, Permission, ScheduleScope, authorize, authorize_schedule, schedule_scope,
};
use carapace_tenancy::SubjectId;
use time::{Duration, OffsetDateTime};

use super::{
    Appointment, AppointmentId, AppointmentInput, AppointmentPage, AppointmentQuery,
    AppointmentRepository, AppointmentScope, AppointmentStatus, BookingRules, Change,
    NewAppointment, Slot, change_of, free_slots, plan_reminders,
};
use crate::access::{AuditTrail, Caller, PatientAccess, refuse};
use crate::patient::{PageLimit, PatientId, PatientRepository};
use crate::{ClinicalError, FieldError};

/// The ports the appointment use cases work over.
pub struct Scheduling<'a, P, T, A> {
    /// Patients and how a subject relates to one.
    pub patients: &'a P,
    /// Single audit events.
    pub trail: &'a T,
    /// Security events (refusals).
    pub events: &'a dyn SecurityEventSink,
    /// Appointments.
    pub appointments: &'a A,
}

/// Whose appointments a listing asks for (already parsed; at most one of
/// the two).
#[derive(Clone, Debug, Default)]
pub struct ListingRequest {
    /// One patient's.
    pub patient: Option<PatientId>,
    /// One practitioner's schedule.
    pub practitioner: Option<SubjectId>,
    /// Only those starting at or after this instant.
    pub from: Option<OffsetDateTime>,
    /// Only those starting before this instant.
    pub to: Option<OffsetDateTime>,
    /// The page size as asked for (checked once the scope is allowed).
    pub limit: Option<String>,
    /// Continue after this (start, id).
    pub after: Option<(OffsetDateTime, AppointmentId)>,
    /// Only those in this state.
    pub status: Option<AppointmentStatus>,
}

fn invalid(field: &str, message: &str) -> ClinicalError {
    ClinicalError::Invalid(vec![FieldError::new(field, message)])
}

impl<P: PatientRepository, T: AuditTrail, A: AppointmentRepository> Scheduling<'_, P, T, A> {
    fn reach(&self) -> PatientAccess<'_, P, T> {
        PatientAccess {
            patients: self.patients,
            trail: self.trail,
            events: self.events,
        }
    }

    /// Books `new` for a caller who may write the patient's appointments,
    /// with a practitioner of the patient's care team (422 `practitioner`
    /// otherwise), and schedules its reminders at `reminder_offsets`
    /// before the start.
    pub async fn book(
        &self,
        caller: &Caller<'_>,
        new: &NewAppointment,
        reminder_offsets: &[Duration],
        now: OffsetDateTime,
    ) -> Result<Appointment, ClinicalError> {
        let access = self
            .reach()
            .reach(caller, new.patient, Permission::AppointmentWrite, now)
            .await?;
        let links = self
            .patients
            .links(access.tenant(), new.patient, &new.practitioner, now)
            .await?
            .ok_or(ClinicalError::NotFound)?;
        if !links.care_team {
            return Err(invalid(
                "practitioner",
                "must be a member of the patient's care team",
            ));
        }
        let reminders = plan_reminders(new.slot.start(), now, reminder_offsets);
        self.appointments.book(&access, new, &reminders).await
    }

    /// The access for `permission` on appointment `id`, through its
    /// patient; no such appointment is [`ClinicalError::NotFound`],
    /// recorded as `action`.
    pub async fn through_patient(
        &self,
        caller: &Caller<'_>,
        id: AppointmentId,
        permission: Permission,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<Access, ClinicalError> {
        let ctx = caller.principal.tenant();
        match self.appointments.patient_of(&ctx, id).await? {
            Some(patient) => self.reach().reach(caller, patient, permission, now).await,
            None => {
                let missing = caller.access.event(
                    action,
                    "appointment",
                    Some(id.to_string()),
                    Outcome::NotFound,
                );
                self.trail.record(&missing).await?;
                Err(ClinicalError::NotFound)
            }
        }
    }

    /// Reads appointment `id` for a caller who may read its patient's
    /// appointments (`appointment.read`).
    pub async fn read(
        &self,
        caller: &Caller<'_>,
        id: AppointmentId,
        now: OffsetDateTime,
    ) -> Result<Appointment, ClinicalError> {
        let access = self
            .through_patient(
                caller,
                id,
                Permission::AppointmentRead,
                "appointment.read",
                now,
            )
            .await?;
        self.appointments
            .get(&access, id)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Moves appointment `id` to `slot` (already checked against the
    /// booking rules) for a caller who may write its patient's
    /// appointments, replacing its pending reminders
    /// (`appointment.reschedule`; 409 `slot_taken` on an overlap).
    pub async fn reschedule(
        &self,
        caller: &Caller<'_>,
        id: AppointmentId,
        slot: Slot,
        reminder_offsets: &[Duration],
        now: OffsetDateTime,
    ) -> Result<Appointment, ClinicalError> {
        let action = "appointment.reschedule";
        let access = self
            .through_patient(caller, id, Permission::AppointmentWrite, action, now)
            .await?;
        let reminders = plan_reminders(slot.start(), now, reminder_offsets);
        self.appointments
            .reschedule(&access, id, slot, &reminders)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Moves appointment `id` to the end state `to` for a caller who may
    /// write its patient's appointments (`appointment.cancel`,
    /// `.complete`, `.no_show`; 409 `invalid_transition` from a state that
    /// cannot become it).
    pub async fn finish(
        &self,
        caller: &Caller<'_>,
        id: AppointmentId,
        to: AppointmentStatus,
        now: OffsetDateTime,
    ) -> Result<Appointment, ClinicalError> {
        let access = self
            .through_patient(caller, id, Permission::AppointmentWrite, to.action(), now)
            .await?;
        self.appointments
            .finish(&access, id, to)
            .await?
            .ok_or(ClinicalError::NotFound)
    }

    /// Replaces appointment `id` by `wanted` at `status` (the whole of it as
    /// the caller wants it) for a caller who may write its patient's
    /// appointments, reached once: nothing changes when it is the
    /// appointment as stored; otherwise its status changes as
    /// [`Self::finish`] or its time as [`Self::reschedule`] (the new slot
    /// checked against `rules`), one at a time ([`change_of`]).
    #[expect(
        clippy::too_many_arguments,
        reason = "the appointment, what is wanted of it, and the rules of a move"
    )]
    pub async fn replace(
        &self,
        caller: &Caller<'_>,
        id: AppointmentId,
        wanted: &AppointmentInput,
        status: AppointmentStatus,
        rules: &BookingRules,
        reminder_offsets: &[Duration],
        now: OffsetDateTime,
    ) -> Result<Appointment, ClinicalError> {
        let access = self
            .through_patient(
                caller,
                id,
                Permission::AppointmentWrite,
                "appointment.update",
                now,
            )
            .await?;
        let current = self
            .appointments
            .get(&access, id)
            .await?
            .ok_or(ClinicalError::NotFound)?;
        let changed = match change_of(&current, wanted, status)? {
            Change::Nothing => return Ok(current),
            Change::Finish(to) => self.appointments.finish(&access, id, to).await?,
            Change::Move { start, end } => {
                let slot = rules
                    .slot(start, end, now)
                    .map_err(ClinicalError::Invalid)?;
                let reminders = plan_reminders(slot.start(), now, reminder_offsets);
                self.appointments
                    .reschedule(&access, id, slot, &reminders)
                    .await?
            }
        };
        changed.ok_or(ClinicalError::NotFound)
    }

    /// A page of the appointments `request` asks for, when the caller may
    /// see them: one patient's (through the patient, as every patient
    /// route), one practitioner's (org-wide roles, or one's own), or by
    /// default the organization's (org-wide roles) or one's own schedule
    /// (clinicians); anyone else must name a patient.
    pub async fn list(
        &self,
        caller: &Caller<'_>,
        request: ListingRequest,
        now: OffsetDateTime,
    ) -> Result<AppointmentPage, ClinicalError> {
        let limit = PageLimit::parse_text(request.limit.as_deref());
        let principal = caller.principal;
        let (scope, access) = match (request.patient, request.practitioner) {
            (Some(patient), _) => {
                let access = self
                    .reach()
                    .reach(caller, patient, Permission::AppointmentRead, now)
                    .await?;
                (AppointmentScope::Patient(patient), access)
            }
            (None, Some(practitioner)) => {
                if let Decision::Deny(reason) = authorize_schedule(principal, &practitioner) {
                    let what = format!("schedule of {practitioner}");
                    return Err(refuse(self.events, caller, what, reason).await);
                }
                (
                    AppointmentScope::Practitioner(practitioner),
                    caller.access.clone(),
                )
            }
            (None, None) => match schedule_scope(principal) {
                Some(ScheduleScope::Organization) => {
                    (AppointmentScope::Organization, caller.access.clone())
                }
                Some(ScheduleScope::Own) => (
                    AppointmentScope::Practitioner(principal.subject().clone()),
                    caller.access.clone(),
                ),
                None => return Err(invalid("patient_id", "is required for your role")),
            },
        };
        let query = AppointmentQuery {
            scope,
            from: request.from,
            to: request.to,
            limit: limit?,
            after: request.after,
            status: request.status,
        };
        self.appointments.list(&access, &query).await
    }

    /// The slots of `length`, every `step`, within `hours` that
    /// `practitioner` has free and that have not started at `now` (times
    /// only: `appointment.availability`), for whoever may see appointments
    /// (`appointment:read`: those who book, patients included); anyone
    /// else (compliance, a service key) is refused and recorded.
    pub async fn free_slots(
        &self,
        caller: &Caller<'_>,
        practitioner: &SubjectId,
        hours: Slot,
        length: Duration,
        step: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<Slot>, ClinicalError> {
        if let Decision::Deny(reason) = authorize(caller.principal, Permission::AppointmentRead) {
            let what = format!("free slots of {practitioner}");
            return Err(refuse(self.events, caller, what, reason).await);
        }
        let busy = self
            .appointments
            .busy(&caller.access, practitioner, hours)
            .await?;
        let booked: Vec<_> = busy
            .into_iter()
            .map(|s| (s, AppointmentStatus::Booked))
            .collect();
        Ok(free_slots(&[hours], &booked, length, step)
            .into_iter()
            .filter(|s| s.start() >= now)
            .collect())
    }
}
