//! Appointments: the rules (pure functions), the stored model and its
//! repository port, and reminders.
//!
//! Times are UTC instants; an appointment covers the half-open interval
//! `[start, end)`, so one that ends at 10:00 does not overlap one that
//! starts at 10:00. Only booked appointments are active: cancelled,
//! completed and no-show ones free their slot. Storage refuses overlaps
//! itself (a PostgreSQL exclusion constraint; a check inside SQLite's
//! single writer transaction), so concurrent bookings cannot both win.

pub mod calendar;
mod free;
pub mod ivr;
mod model;
mod reminder;
mod replace;
mod schedule;

pub use free::{FreeSlotsInput, FreeSlotsQuery, STEP_MINUTES};
pub use model::{
    Appointment, AppointmentId, AppointmentInput, AppointmentPage, AppointmentQuery,
    AppointmentRepository, AppointmentScope, CURSOR_SCOPE, Channel, NewAppointment, PHI_FIELDS,
    PlannedReminder, REASON_MAX, TimeZoneName, instant_field, plan_reminders, practitioner_field,
    reason,
};
pub use reminder::{Notifier, NotifyError, REMINDER_SUBJECT, ReminderMessage, reminder_text};
pub use replace::{Change, change_of};
pub use schedule::{ListingRequest, Scheduling};

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::FieldError;

/// Where an appointment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppointmentStatus {
    /// Booked and upcoming (or under way): the only active state.
    Booked,
    /// Took place.
    Completed,
    /// Called off.
    Cancelled,
    /// The patient did not come.
    NoShow,
}

impl AppointmentStatus {
    /// Stable name (storage, API).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::NoShow => "no_show",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Booked, Self::Completed, Self::Cancelled, Self::NoShow]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// The audit action of moving an appointment into this state.
    pub fn action(self) -> &'static str {
        match self {
            Self::Booked => "appointment.book",
            Self::Completed => "appointment.complete",
            Self::Cancelled => "appointment.cancel",
            Self::NoShow => "appointment.no_show",
        }
    }

    /// Whether it holds its time slot.
    pub fn is_active(self) -> bool {
        self == Self::Booked
    }

    /// Whether an appointment may go from `self` to `next`: only a booked
    /// appointment changes, and only to an end state. Rescheduling keeps it
    /// booked (see [`may_reschedule`]).
    pub fn may_become(self, next: Self) -> bool {
        self == Self::Booked && next != Self::Booked
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an appointment in `from` with `slot` may become `to` at `now`:
/// only a booked appointment changes, to an end state; it is completed or
/// marked no-show only once it has started.
pub fn check_transition(
    from: AppointmentStatus,
    to: AppointmentStatus,
    slot: &Slot,
    now: OffsetDateTime,
) -> Result<(), crate::ClinicalError> {
    if !from.may_become(to) {
        return Err(crate::ClinicalError::Conflict {
            code: "invalid_transition",
            detail: "only a booked appointment can be rescheduled, cancelled, completed or marked no-show",
        });
    }
    if matches!(to, AppointmentStatus::Completed | AppointmentStatus::NoShow) && now < slot.start {
        return Err(crate::ClinicalError::Conflict {
            code: "not_started",
            detail: "an appointment is completed or marked no-show only once it has started",
        });
    }
    Ok(())
}

/// The conflict of a booking that overlaps an active appointment.
pub fn slot_taken() -> crate::ClinicalError {
    crate::ClinicalError::Conflict {
        code: "slot_taken",
        detail: "the practitioner or the patient already has an appointment at that time",
    }
}

/// Whether an appointment in `status` may be moved to another time.
pub fn may_reschedule(status: AppointmentStatus) -> bool {
    status == AppointmentStatus::Booked
}

/// A UTC interval `[start, end)`, start strictly before end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    start: OffsetDateTime,
    end: OffsetDateTime,
}

impl Slot {
    /// `[start, end)`, or `None` unless `start < end`.
    pub fn new(start: OffsetDateTime, end: OffsetDateTime) -> Option<Self> {
        (start < end).then_some(Self { start, end })
    }

    /// Its start.
    pub fn start(&self) -> OffsetDateTime {
        self.start
    }

    /// Its end (exclusive).
    pub fn end(&self) -> OffsetDateTime {
        self.end
    }

    /// Its length.
    pub fn length(&self) -> Duration {
        self.end - self.start
    }

    /// Whether the two share any instant (touching ends do not).
    pub fn overlaps(&self, other: &Slot) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The organization's booking rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookingRules {
    /// Shortest appointment.
    pub min_length: Duration,
    /// Longest appointment.
    pub max_length: Duration,
    /// How far ahead one may book.
    pub horizon: Duration,
}

impl Default for BookingRules {
    fn default() -> Self {
        Self {
            min_length: Duration::minutes(5),
            max_length: Duration::hours(8),
            horizon: Duration::days(366),
        }
    }
}

impl BookingRules {
    /// The slot from `start` to `end` if it may be booked at `now`; every
    /// broken rule otherwise, naming the field, never echoing a value.
    pub fn slot(
        &self,
        start: OffsetDateTime,
        end: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Slot, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(slot) = Slot::new(start, end) else {
            return Err(vec![FieldError::new("end", "must be after start")]);
        };
        if slot.length() < self.min_length {
            errors.push(FieldError::new(
                "end",
                format!(
                    "the appointment must last at least {} minutes",
                    self.min_length.whole_minutes()
                ),
            ));
        }
        if slot.length() > self.max_length {
            errors.push(FieldError::new(
                "end",
                format!(
                    "the appointment may last at most {} minutes",
                    self.max_length.whole_minutes()
                ),
            ));
        }
        if start < now {
            errors.push(FieldError::new("start", "must not be in the past"));
        }
        if start > now + self.horizon {
            errors.push(FieldError::new(
                "start",
                format!("may be at most {} days ahead", self.horizon.whole_days()),
            ));
        }
        if errors.is_empty() {
            Ok(slot)
        } else {
            Err(errors)
        }
    }
}

/// The first active appointment among `booked` that `slot` would collide
/// with, if any (the database enforces the same rule; this is for a clear
/// answer and for engines without the constraint).
pub fn conflict<'a>(slot: &Slot, booked: &'a [(Slot, AppointmentStatus)]) -> Option<&'a Slot> {
    booked
        .iter()
        .filter(|(_, status)| status.is_active())
        .map(|(s, _)| s)
        .find(|s| s.overlaps(slot))
}

/// The free slots of `length` inside `working` (the day's working hours),
/// stepping by `step` from each working interval's start, that overlap no
/// active appointment in `booked`. Ordered by start.
pub fn free_slots(
    working: &[Slot],
    booked: &[(Slot, AppointmentStatus)],
    length: Duration,
    step: Duration,
) -> Vec<Slot> {
    if length <= Duration::ZERO || step <= Duration::ZERO {
        return Vec::new();
    }
    let mut out = Vec::new();
    for hours in working {
        let mut start = hours.start;
        while start + length <= hours.end {
            if let Some(candidate) = Slot::new(start, start + length)
                && conflict(&candidate, booked).is_none()
            {
                out.push(candidate);
            }
            start += step;
        }
    }
    out.sort_by_key(Slot::start);
    out
}

/// Default reminder offsets: a day and two hours before.
pub const DEFAULT_REMINDER_OFFSETS: [Duration; 2] = [Duration::hours(24), Duration::hours(2)];

/// When to remind about an appointment starting at `start`: each offset
/// before it that is still in the future at `now`, earliest first.
pub fn reminder_times(
    start: OffsetDateTime,
    now: OffsetDateTime,
    offsets: &[Duration],
) -> Vec<OffsetDateTime> {
    let mut times: Vec<OffsetDateTime> = offsets
        .iter()
        .filter(|o| **o > Duration::ZERO)
        .map(|o| start - *o)
        .filter(|t| *t > now)
        .collect();
    times.sort();
    times.dedup();
    times
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn slot(a: OffsetDateTime, b: OffsetDateTime) -> Slot {
        Slot::new(a, b).unwrap_or_else(|| panic!("{a} < {b}"))
    }

    #[test]
    fn only_booked_appointments_change_and_only_to_an_end_state() {
        use AppointmentStatus::*;
        for next in [Completed, Cancelled, NoShow] {
            assert!(Booked.may_become(next));
            for from in [Completed, Cancelled, NoShow] {
                assert!(!from.may_become(next), "{from} -> {next}");
                assert!(!from.may_become(Booked), "{from} -> booked");
            }
        }
        assert!(!Booked.may_become(Booked));
        assert!(may_reschedule(Booked) && !may_reschedule(Cancelled));
        assert!(Booked.is_active() && !NoShow.is_active());
        let nine = datetime!(2026-12-01 09:00 UTC);
        let s = slot(nine, nine + Duration::minutes(30));
        let before = nine - Duration::minutes(1);
        assert!(check_transition(Booked, Cancelled, &s, before).is_ok());
        let code = |r: Result<(), crate::ClinicalError>| r.err().map(|e| e.code());
        assert_eq!(
            code(check_transition(Booked, Completed, &s, before)),
            Some("not_started")
        );
        assert_eq!(
            code(check_transition(Booked, NoShow, &s, before)),
            Some("not_started")
        );
        assert!(check_transition(Booked, NoShow, &s, nine).is_ok());
        assert_eq!(
            code(check_transition(Cancelled, Completed, &s, nine)),
            Some("invalid_transition")
        );
    }

    #[test]
    fn touching_appointments_do_not_overlap() {
        let nine = datetime!(2026-12-01 09:00 UTC);
        let ten = datetime!(2026-12-01 10:00 UTC);
        let eleven = datetime!(2026-12-01 11:00 UTC);
        assert!(!slot(nine, ten).overlaps(&slot(ten, eleven)));
        assert!(slot(nine, eleven).overlaps(&slot(ten, eleven)));
        assert!(slot(ten, eleven).overlaps(&slot(nine, eleven)));
        assert!(Slot::new(ten, ten).is_none() && Slot::new(eleven, ten).is_none());
    }

    #[test]
    fn booking_rules_name_each_broken_rule() {
        let rules = BookingRules::default();
        let now = datetime!(2026-12-01 08:00 UTC);
        let at = |h: u8, m: u8| {
            datetime!(2026-12-01 00:00 UTC)
                + Duration::hours(h.into())
                + Duration::minutes(m.into())
        };
        assert!(rules.slot(at(9, 0), at(9, 30), now).is_ok());
        let fields = |r: Result<Slot, Vec<FieldError>>| -> Vec<String> {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(rules.slot(at(10, 0), at(9, 0), now)), vec!["end"]);
        assert_eq!(fields(rules.slot(at(9, 0), at(9, 2), now)), vec!["end"]);
        assert_eq!(fields(rules.slot(at(9, 0), at(18, 0), now)), vec!["end"]);
        assert_eq!(fields(rules.slot(at(7, 0), at(7, 30), now)), vec!["start"]);
        let far = now + Duration::days(400);
        assert_eq!(
            fields(rules.slot(far, far + Duration::minutes(30), now)),
            vec!["start"]
        );
    }

    #[test]
    fn cancelled_appointments_free_their_slot() {
        let nine = datetime!(2026-12-01 09:00 UTC);
        let booked = [
            (
                slot(nine, nine + Duration::minutes(30)),
                AppointmentStatus::Booked,
            ),
            (
                slot(nine + Duration::hours(1), nine + Duration::minutes(90)),
                AppointmentStatus::Cancelled,
            ),
        ];
        let wanted = slot(nine + Duration::minutes(15), nine + Duration::minutes(45));
        assert_eq!(conflict(&wanted, &booked), Some(&booked[0].0));
        let later = slot(nine + Duration::hours(1), nine + Duration::minutes(80));
        assert_eq!(conflict(&later, &booked), None);
    }

    #[test]
    fn free_slots_fill_working_hours_around_bookings() {
        let nine = datetime!(2026-12-01 09:00 UTC);
        let working = [
            slot(nine, nine + Duration::hours(2)),
            slot(nine + Duration::hours(3), nine + Duration::hours(4)),
        ];
        let booked = [(
            slot(nine + Duration::minutes(30), nine + Duration::minutes(60)),
            AppointmentStatus::Booked,
        )];
        let free = free_slots(
            &working,
            &booked,
            Duration::minutes(30),
            Duration::minutes(30),
        );
        let starts: Vec<i64> = free
            .iter()
            .map(|s| (s.start() - nine).whole_minutes())
            .collect();
        assert_eq!(starts, vec![0, 60, 90, 180, 210]);
        assert!(free_slots(&working, &booked, Duration::ZERO, Duration::minutes(5)).is_empty());
    }

    #[test]
    fn reminders_are_the_offsets_still_ahead() {
        let start = datetime!(2026-12-02 10:00 UTC);
        let early = datetime!(2026-11-30 10:00 UTC);
        assert_eq!(
            reminder_times(start, early, &DEFAULT_REMINDER_OFFSETS),
            vec![
                datetime!(2026-12-01 10:00 UTC),
                datetime!(2026-12-02 08:00 UTC)
            ]
        );
        let late = datetime!(2026-12-02 07:00 UTC);
        assert_eq!(
            reminder_times(start, late, &DEFAULT_REMINDER_OFFSETS),
            vec![datetime!(2026-12-02 08:00 UTC)]
        );
        assert!(reminder_times(start, start, &DEFAULT_REMINDER_OFFSETS).is_empty());
    }
}
