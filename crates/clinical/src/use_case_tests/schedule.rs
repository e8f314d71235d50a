//! The scheduling use cases against in-memory ports.

use carapace_audit::SecurityEventKind;
use carapace_auth::Role;
use carapace_auth::policy::DenyReason;
use carapace_tenancy::{ClinicianScope, OrgId, OrgSettings};
use time::macros::datetime;

use carapace_audit::Outcome;
use carapace_auth::policy::Permission;
use time::{Duration, OffsetDateTime};

use super::fakes::{
    FakeEvents, FakePatients, FakeTrail, NOW, block_on, caller, lock, principal, subject,
};
use super::stores::FakeAppointments;
use crate::ClinicalError;
use crate::appointment::TimeZoneName;
use crate::appointment::{
    AppointmentId, AppointmentScope, ListingRequest, NewAppointment, Scheduling, Slot,
};

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
        block_on(
            w.scheduling()
                .book(&caller(&ada, settings()), &new, &[Duration::hours(24)], NOW),
        )
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
        3,
        "one reminder a day ahead on each channel (e-mail, SMS, a call)"
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

#[test]
fn free_slots_need_appointment_read_and_a_refusal_is_recorded() {
    let w = World::default();
    let org = OrgId::generate();
    let auditor = principal("auditor", org, &[Role::Compliance]);
    let free = block_on(w.scheduling().free_slots(
        &caller(&auditor, settings()),
        &subject("dr-ada"),
        slot(datetime!(2026-12-01 11:00 UTC), 180),
        Duration::minutes(30),
        Duration::minutes(30),
        NOW,
    ));
    assert!(
        matches!(
            free,
            Err(ClinicalError::Denied(DenyReason::MissingPermission(_)))
        ),
        "{free:?}"
    );
    let events = lock(&w.events.events);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, SecurityEventKind::AuthorizationDenied);
    assert!(events[0].detail.starts_with("free slots of dr-ada: "));
}
