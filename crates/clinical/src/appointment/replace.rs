//! Replacing an appointment by the whole of it as the caller wants it (a
//! FHIR `PUT`): what that asks for, decided against the stored one.

use time::OffsetDateTime;

use super::{Appointment, AppointmentInput, AppointmentStatus, instant_field};
use crate::{ClinicalError, FieldError};

/// What replacing an appointment asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the body is the appointment as it is.
    Nothing,
    /// Another time (rescheduling).
    Move {
        /// The new start.
        start: OffsetDateTime,
        /// The new end.
        end: OffsetDateTime,
    },
    /// Another status (cancelling, completing, a no-show).
    Finish(AppointmentStatus),
}

/// What replacing `current` by `wanted` at `status` changes: its status or
/// its time, one at a time. The participants (`participant`), the reason
/// (`reason`) and the time zone (`time_zone`) do not change on an update
/// (book another appointment); asking for it is refused naming the field.
pub fn change_of(
    current: &Appointment,
    wanted: &AppointmentInput,
    status: AppointmentStatus,
) -> Result<Change, ClinicalError> {
    let mut errors = Vec::new();
    if wanted.patient_id != current.patient.as_uuid()
        || wanted.practitioner != current.practitioner.as_str()
    {
        errors.push(FieldError::new(
            "participant",
            "the participants do not change: book another appointment",
        ));
    }
    if wanted.time_zone != current.time_zone.as_str() {
        errors.push(FieldError::new(
            "time_zone",
            "the time zone does not change",
        ));
    }
    if wanted.reason.as_deref() != current.reason.as_ref().map(|r| r.expose_phi().as_str()) {
        errors.push(FieldError::new("reason", "the reason does not change"));
    }
    let start = instant_field("start", &wanted.start).map_err(|e| errors.push(e));
    let end = instant_field("end", &wanted.end).map_err(|e| errors.push(e));
    let (Ok(start), Ok(end)) = (start, end) else {
        return Err(ClinicalError::Invalid(errors));
    };
    if !errors.is_empty() {
        return Err(ClinicalError::Invalid(errors));
    }
    let moved = start != current.slot.start() || end != current.slot.end();
    match (status != current.status, moved) {
        (false, false) => Ok(Change::Nothing),
        (false, true) => Ok(Change::Move { start, end }),
        (true, false) => Ok(Change::Finish(status)),
        (true, true) => Err(ClinicalError::Invalid(vec![FieldError::new(
            "status",
            "change the status or the time, not both at once",
        )])),
    }
}
