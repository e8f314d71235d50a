//! Wire shapes of appointments. [`AppointmentView::from`] is the one place
//! an appointment's PHI (its reason) leaves its wrapper on the way out.

use carapace_clinical::appointment::{Appointment, AppointmentInput, Slot, TimeZoneName};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

/// A booking. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookAppointment {
    /// The patient.
    pub patient_id: Uuid,
    /// The clinician (a member of the patient's care team).
    #[schema(example = "clinician-ada", max_length = 255)]
    pub practitioner: String,
    /// RFC 3339 start (any offset; stored in UTC, whole seconds).
    #[schema(example = "2026-12-01T09:00:00+01:00", format = DateTime, max_length = 64)]
    pub start: String,
    /// RFC 3339 end, after the start; at most the configured maximum
    /// length (default 8 hours).
    #[schema(example = "2026-12-01T09:30:00+01:00", format = DateTime, max_length = 64)]
    pub end: String,
    /// IANA time zone the appointment is shown in.
    #[schema(example = "Europe/Berlin", max_length = 64)]
    pub time_zone: String,
    /// Why the patient comes (PHI; never in reminders or calendar feeds).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

impl BookAppointment {
    /// The raw domain input.
    pub fn into_input(self) -> AppointmentInput {
        AppointmentInput {
            patient_id: self.patient_id,
            practitioner: self.practitioner,
            start: self.start,
            end: self.end,
            time_zone: self.time_zone,
            reason: self.reason,
        }
    }
}

/// A new time for a booked appointment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reschedule {
    /// RFC 3339 start.
    #[schema(format = DateTime, max_length = 64)]
    pub start: String,
    /// RFC 3339 end.
    #[schema(format = DateTime, max_length = 64)]
    pub end: String,
}

/// An appointment.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentView {
    id: Uuid,
    patient_id: Uuid,
    practitioner: String,
    /// RFC 3339, UTC.
    start: String,
    /// RFC 3339, UTC.
    end: String,
    time_zone: String,
    /// The start as local wall-clock text in `time_zone`.
    local_start: String,
    /// `booked`, `completed`, `cancelled` or `no_show`.
    status: String,
    reason: Option<String>,
    created_at: String,
    updated_at: String,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl From<&Appointment> for AppointmentView {
    fn from(a: &Appointment) -> Self {
        Self {
            id: a.id.as_uuid(),
            patient_id: a.patient.as_uuid(),
            practitioner: a.practitioner.as_str().to_owned(),
            start: rfc3339(a.slot.start()),
            end: rfc3339(a.slot.end()),
            time_zone: a.time_zone.as_str().to_owned(),
            local_start: a.time_zone.local_text(a.slot.start()),
            status: a.status.as_str().to_owned(),
            reason: a.reason.as_ref().map(|r| r.expose_phi().clone()),
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// One page of appointments.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentList {
    /// By start, then id.
    pub items: Vec<AppointmentView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A free slot.
#[derive(Debug, Serialize, ToSchema)]
pub struct FreeSlot {
    /// RFC 3339, UTC.
    start: String,
    /// RFC 3339, UTC.
    end: String,
    /// The start in the requested zone.
    local_start: String,
}

impl FreeSlot {
    /// `slot`, shown in `zone`.
    pub fn new(slot: &Slot, zone: &TimeZoneName) -> Self {
        Self {
            start: rfc3339(slot.start()),
            end: rfc3339(slot.end()),
            local_start: zone.local_text(slot.start()),
        }
    }
}

/// A practitioner's free slots on one day.
#[derive(Debug, Serialize, ToSchema)]
pub struct FreeSlots {
    /// By start.
    pub slots: Vec<FreeSlot>,
}

/// Whether reminders go out on each channel.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderPreferences {
    /// Reminders by e-mail.
    pub email: bool,
    /// Reminders by SMS.
    pub sms: bool,
    /// A reminder call (once per appointment, in the clinic's calling
    /// hours); left as it was when absent from a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<bool>,
}
