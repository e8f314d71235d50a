//! The appointment use cases that decide: booking with a care-team
//! practitioner, reaching an appointment through its patient, whose
//! appointments a listing shows, and a practitioner's free slots.

use carapace_audit::{Access, Outcome, SecurityEventSink};
use carapace_auth::policy::{
    Decision, Permission, ScheduleScope, authorize_schedule, schedule_scope,
};
use carapace_tenancy::SubjectId;
use time::{Duration, OffsetDateTime};

use super::{
    Appointment, AppointmentId, AppointmentPage, AppointmentQuery, AppointmentRepository,
    AppointmentScope, AppointmentStatus, NewAppointment, Slot, free_slots, plan_reminders,
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
        };
        self.appointments.list(&access, &query).await
    }

    /// The slots of `length`, every `step`, within `hours` that
    /// `practitioner` has free and that have not started at `now` (times
    /// only: `appointment.availability`).
    pub async fn free_slots(
        &self,
        caller: &Caller<'_>,
        practitioner: &SubjectId,
        hours: Slot,
        length: Duration,
        step: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<Slot>, ClinicalError> {
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

#[cfg(test)]
mod tests {
    use carapace_audit::SecurityEventKind;
    use carapace_auth::Role;
    use carapace_auth::policy::DenyReason;
    use carapace_tenancy::{ClinicianScope, OrgId, OrgSettings};
    use time::macros::datetime;

    use super::*;
    use crate::access::fakes::{
        FakeAppointments, FakeEvents, FakePatients, FakeTrail, NOW, block_on, caller, lock,
        principal, subject,
    };
    use crate::appointment::TimeZoneName;

    #[derive(Default)]
    struct World {
        patients: FakePatients,
        trail: FakeTrail,
        events: FakeEvents,
        appointments: FakeAppointments,
    }

    impl World {
        fn scheduling(&self) -> Scheduling<'_, FakePatients, FakeTrail, FakeAppointments> {
            Scheduling {
                patients: &self.patients,
                trail: &self.trail,
                events: &self.events,
                appointments: &self.appointments,
            }
        }
    }

    fn settings() -> OrgSettings {
        OrgSettings {
            clinician_scope: ClinicianScope::CareTeam,
            ..OrgSettings::default()
        }
    }

    fn slot(start: OffsetDateTime, minutes: i64) -> Slot {
        Slot::new(start, start + Duration::minutes(minutes)).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn a_listing_without_a_filter_follows_the_role() {
        let w = World::default();
        let org = OrgId::generate();
        let list = |p| {
            block_on(
                w.scheduling()
                    .list(&caller(p, settings()), ListingRequest::default(), NOW),
            )
        };
        let admin = principal("admin-ann", org, &[Role::Admin]);
        let ada = principal("dr-ada", org, &[Role::Clinician]);
        let jane = principal("patient-jane", org, &[Role::Patient]);
        assert!(list(&admin).is_ok());
        assert!(list(&ada).is_ok());
        assert!(matches!(
            list(&jane),
            Err(ClinicalError::Invalid(e)) if e[0].field == "patient_id"
        ));
        assert_eq!(
            *lock(&w.appointments.listed),
            vec![
                (AppointmentScope::Organization, org),
                (AppointmentScope::Practitioner(subject("dr-ada")), org),
            ]
        );
    }

    #[test]
    fn another_practitioners_schedule_is_refused_and_recorded() {
        let w = World::default();
        let org = OrgId::generate();
        let eve = principal("dr-eve", org, &[Role::Clinician]);
        let peek = ListingRequest {
            practitioner: Some(subject("dr-ada")),
            limit: Some("0".into()),
            ..ListingRequest::default()
        };
        let listed = block_on(w.scheduling().list(&caller(&eve, settings()), peek, NOW));
        assert!(
            matches!(
                listed,
                Err(ClinicalError::Denied(DenyReason::NoRelationship(_)))
            ),
            "refused before the bad limit is looked at: {listed:?}"
        );
        let events = lock(&w.events.events);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, SecurityEventKind::AuthorizationDenied);
        assert!(events[0].detail.starts_with("schedule of dr-ada: "));
        assert!(lock(&w.appointments.listed).is_empty());
    }

    #[test]
    fn a_patients_appointments_go_through_the_patient() {
        let w = World::default();
        let org = OrgId::generate();
        let id = w.patients.add(org);
        w.patients.link(id, "patient-jane");
        let jane = principal("patient-jane", org, &[Role::Patient]);
        let john = principal("patient-john", org, &[Role::Patient]);
        let foreign = principal("patient-mallory", OrgId::generate(), &[Role::Patient]);
        let of = |p| {
            let request = ListingRequest {
                patient: Some(id),
                ..ListingRequest::default()
            };
            block_on(w.scheduling().list(&caller(p, settings()), request, NOW))
        };
        assert!(of(&jane).is_ok());
        assert!(matches!(of(&john), Err(ClinicalError::Denied(_))));
        assert!(matches!(of(&foreign), Err(ClinicalError::NotFound)));
        assert_eq!(lock(&w.appointments.listed).len(), 1);
    }

    #[test]
    fn bookings_need_a_care_team_practitioner() {
        let w = World::default();
        let org = OrgId::generate();
        let id = w.patients.add(org);
        w.patients.join(id, "dr-ada");
        let ada = principal("dr-ada", org, &[Role::Clinician]);
        let book = |practitioner: &str| {
            let new = NewAppointment {
                patient: id,
                practitioner: subject(practitioner),
                slot: slot(datetime!(2026-12-03 09:00 UTC), 30),
                time_zone: TimeZoneName::parse("UTC").unwrap_or_else(|_| unreachable!()),
                reason: None,
            };
            block_on(w.scheduling().book(
                &caller(&ada, settings()),
                &new,
                &[Duration::hours(24)],
                NOW,
            ))
        };
        assert!(matches!(
            book("dr-outsider"),
            Err(ClinicalError::Invalid(e)) if e[0].field == "practitioner"
        ));
        assert!(lock(&w.appointments.booked).is_empty());
        assert!(book("dr-ada").is_ok());
        let booked = lock(&w.appointments.booked);
        assert_eq!(booked.len(), 1);
        assert_eq!(
            booked[0].1.len(),
            2,
            "one reminder a day ahead on each channel"
        );
    }

    #[test]
    fn a_missing_appointment_is_not_found_and_recorded() {
        let w = World::default();
        let org = OrgId::generate();
        let ada = principal("dr-ada", org, &[Role::Clinician]);
        let id = AppointmentId::generate();
        let reached = block_on(w.scheduling().through_patient(
            &caller(&ada, settings()),
            id,
            Permission::AppointmentWrite,
            "appointment.cancel",
            NOW,
        ));
        assert!(matches!(reached, Err(ClinicalError::NotFound)));
        let trail = lock(&w.trail.events);
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].action, "appointment.cancel");
        assert_eq!(trail[0].outcome, Outcome::NotFound);
    }

    #[test]
    fn free_slots_skip_busy_and_past_times() {
        let w = World::default();
        let org = OrgId::generate();
        let ada = principal("dr-ada", org, &[Role::Clinician]);
        lock(&w.appointments.busy).insert(
            subject("dr-ada"),
            vec![slot(datetime!(2026-12-01 13:00 UTC), 30)],
        );
        let free = block_on(w.scheduling().free_slots(
            &caller(&ada, settings()),
            &subject("dr-ada"),
            slot(datetime!(2026-12-01 11:00 UTC), 180),
            Duration::minutes(30),
            Duration::minutes(30),
            NOW,
        ));
        let starts: Vec<_> = free.unwrap_or_default().iter().map(|s| s.start()).collect();
        assert_eq!(
            starts,
            vec![
                datetime!(2026-12-01 12:00 UTC),
                datetime!(2026-12-01 12:30 UTC),
                datetime!(2026-12-01 13:30 UTC),
            ]
        );
    }
}
