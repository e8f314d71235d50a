//! Appointments as stored: ids, the IANA time zone they are shown in, the
//! validated booking input, listings, and the repository port.

use std::future::Future;

use carapace_audit::Access;
use carapace_phi_crypto::Phi;
use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;

use super::{AppointmentStatus, BookingRules, Slot};
use crate::patient::{PageLimit, PatientId};
use crate::{ClinicalError, FieldError};

carapace_tenancy::entity_id! {
    /// An appointment's id.
    pub struct AppointmentId;
}

/// A valid IANA time zone name (`Europe/Berlin`, `UTC`), used to show and to
/// interpret local times; instants are always stored in UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeZoneName {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl TimeZoneName {
    /// Longest accepted name.
    pub const MAX: usize = 64;

    /// The zone named `raw`, if the bundled time zone database knows it.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let unknown = || FieldError::new("time_zone", "must be an IANA time zone name");
        if raw.is_empty() || raw.len() > Self::MAX {
            return Err(unknown());
        }
        let zone = jiff::tz::TimeZone::get(raw).map_err(|_| unknown())?;
        Ok(Self {
            name: raw.to_owned(),
            zone,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// `t` as local wall-clock text, e.g. `Tue 1 Dec 2026, 09:30`.
    pub fn local_text(&self, t: OffsetDateTime) -> String {
        match jiff::Timestamp::from_second(t.unix_timestamp()) {
            Ok(ts) => ts
                .to_zoned_datetime(self.zone.clone())
                .strftime("%a %-d %b %Y, %H:%M")
                .to_string(),
            Err(_) => t.format(&Rfc3339).unwrap_or_default(),
        }
    }

    /// The local date at instant `t`.
    pub fn local_date(&self, t: OffsetDateTime) -> Option<Date> {
        let zoned = jiff::Timestamp::from_second(t.unix_timestamp())
            .ok()?
            .to_zoned_datetime(self.zone.clone());
        let month = time::Month::try_from(u8::try_from(zoned.month()).ok()?).ok()?;
        Date::from_calendar_date(
            i32::from(zoned.year()),
            month,
            u8::try_from(zoned.day()).ok()?,
        )
        .ok()
    }

    /// The UTC instant of local `date` at `time` (a time skipped by a
    /// daylight-saving change resolves to the later side).
    pub fn instant(&self, date: Date, time: Time) -> Option<OffsetDateTime> {
        let civil = jiff::civil::date(
            i16::try_from(date.year()).ok()?,
            i8::try_from(u8::from(date.month())).ok()?,
            i8::try_from(date.day()).ok()?,
        )
        .at(
            i8::try_from(time.hour()).ok()?,
            i8::try_from(time.minute()).ok()?,
            0,
            0,
        );
        let ts = civil.to_zoned_datetime(self.zone.clone()).ok()?.timestamp();
        OffsetDateTime::from_unix_timestamp(ts.as_second()).ok()
    }

    /// The working hours `from`-`to` of local `date` as a UTC slot.
    pub fn local_hours(&self, date: Date, from: Time, to: Time) -> Option<Slot> {
        Slot::new(self.instant(date, from)?, self.instant(date, to)?)
    }
}

/// Longest visit reason, in characters.
pub const REASON_MAX: usize = 500;

/// A stored appointment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appointment {
    /// Its id.
    pub id: AppointmentId,
    /// The organization.
    pub org: OrgId,
    /// Whom it is for.
    pub patient: PatientId,
    /// The clinician it is with (a member of the patient's care team).
    pub practitioner: SubjectId,
    /// When, in UTC.
    pub slot: Slot,
    /// The zone its times are shown in.
    pub time_zone: TimeZoneName,
    /// Where it stands.
    pub status: AppointmentStatus,
    /// Why the patient comes (PHI, encrypted at rest).
    pub reason: Option<Phi<String>>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// A validated booking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAppointment {
    /// Whom it is for.
    pub patient: PatientId,
    /// The clinician.
    pub practitioner: SubjectId,
    /// When.
    pub slot: Slot,
    /// Display zone.
    pub time_zone: TimeZoneName,
    /// Visit reason.
    pub reason: Option<Phi<String>>,
}

/// A booking as a client sends it, before validation.
#[derive(Clone, Debug, Default)]
pub struct AppointmentInput {
    /// The patient's id.
    pub patient_id: Uuid,
    /// The practitioner's subject.
    pub practitioner: String,
    /// RFC 3339 start.
    pub start: String,
    /// RFC 3339 end.
    pub end: String,
    /// IANA zone to show it in.
    pub time_zone: String,
    /// Visit reason, up to 500 characters.
    pub reason: Option<String>,
}

/// Parses an RFC 3339 instant field (to UTC, whole seconds), with a named
/// error.
pub fn instant_field(field: &str, raw: &str) -> Result<OffsetDateTime, FieldError> {
    if raw.len() > 64 {
        return Err(FieldError::new(field, "must be an RFC 3339 date-time"));
    }
    OffsetDateTime::parse(raw, &Rfc3339)
        .map(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .replace_nanosecond(0)
                .unwrap_or(t)
        })
        .map_err(|_| FieldError::new(field, "must be an RFC 3339 date-time"))
}

/// Parses a practitioner subject field.
pub fn practitioner_field(raw: &str) -> Result<SubjectId, FieldError> {
    SubjectId::parse(raw).map_err(|_| FieldError::new("practitioner", "must be 1-255 bytes"))
}

impl AppointmentInput {
    /// Validates every field against `rules` at `now`, reporting every
    /// problem at once.
    pub fn parse(
        self,
        rules: &BookingRules,
        now: OffsetDateTime,
    ) -> Result<NewAppointment, ClinicalError> {
        let mut errors = Vec::new();
        let practitioner = practitioner_field(&self.practitioner)
            .map_err(|e| errors.push(e))
            .ok();
        let start = instant_field("start", &self.start)
            .map_err(|e| errors.push(e))
            .ok();
        let end = instant_field("end", &self.end)
            .map_err(|e| errors.push(e))
            .ok();
        let time_zone = TimeZoneName::parse(&self.time_zone)
            .map_err(|e| errors.push(e))
            .ok();
        let slot = match (start, end) {
            (Some(s), Some(e)) => rules.slot(s, e, now).map_err(|e| errors.extend(e)).ok(),
            _ => None,
        };
        let reason = self
            .reason
            .as_deref()
            .and_then(|r| reason(r).map_err(|e| errors.push(e)).ok());
        match (practitioner, slot, time_zone) {
            (Some(practitioner), Some(slot), Some(time_zone)) if errors.is_empty() => {
                Ok(NewAppointment {
                    patient: PatientId::from_uuid(self.patient_id),
                    practitioner,
                    slot,
                    time_zone,
                    reason,
                })
            }
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

/// A visit reason: 1-500 characters, no control characters but newlines.
pub fn reason(raw: &str) -> Result<Phi<String>, FieldError> {
    let text = raw.trim();
    let n = text.chars().count();
    if n == 0 || n > REASON_MAX || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError::new(
            "reason",
            format!("must be 1 to {REASON_MAX} characters"),
        ));
    }
    Ok(Phi::new(text.to_owned()))
}

/// Which appointments a listing covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppointmentScope {
    /// Every appointment of the organization.
    Organization,
    /// One patient's.
    Patient(PatientId),
    /// One practitioner's schedule.
    Practitioner(SubjectId),
}

/// An appointment listing request: ordered by start, then id.
#[derive(Clone, Debug)]
pub struct AppointmentQuery {
    /// Whose appointments.
    pub scope: AppointmentScope,
    /// Only those starting at or after this instant.
    pub from: Option<OffsetDateTime>,
    /// Only those starting before this instant.
    pub to: Option<OffsetDateTime>,
    /// Page size.
    pub limit: PageLimit,
    /// Continue after this (start, id).
    pub after: Option<(OffsetDateTime, AppointmentId)>,
    /// Only those in this state.
    pub status: Option<AppointmentStatus>,
}

/// One page of appointments.
#[derive(Clone, Debug)]
pub struct AppointmentPage {
    /// The appointments, by start then id.
    pub items: Vec<Appointment>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<(OffsetDateTime, AppointmentId)>,
}

/// The scope name binding pagination cursors to appointment listings.
pub const CURSOR_SCOPE: &str = "appointments";

/// Names of an appointment's PHI fields, as audit events list them.
pub const PHI_FIELDS: [&str; 3] = ["patient", "slot", "reason"];

/// A delivery channel for reminders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// E-mail to the patient's address.
    Email,
    /// SMS to the patient's phone.
    Sms,
    /// A call to the patient's phone, with a keypad menu.
    Voice,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Voice];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Voice => "voice",
        }
    }

    /// The channel named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A reminder to schedule with a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedReminder {
    /// When to send it.
    pub due_at: OffsetDateTime,
    /// How.
    pub channel: Channel,
}

/// The reminders for an appointment starting at `start`: each of
/// `offsets` still ahead at `now` by e-mail and SMS, and one call, at the
/// earliest of them (a phone rings once per appointment).
pub fn plan_reminders(
    start: OffsetDateTime,
    now: OffsetDateTime,
    offsets: &[time::Duration],
) -> Vec<PlannedReminder> {
    let times = super::reminder_times(start, now, offsets);
    let first = times.first().copied();
    times
        .into_iter()
        .flat_map(|due_at| {
            Channel::ALL
                .into_iter()
                .filter(move |c| *c != Channel::Voice || Some(due_at) == first)
                .map(move |channel| PlannedReminder { due_at, channel })
        })
        .collect()
}

/// Storage of appointments, confined to the caller's organization like
/// every repository. Writes record their audit event in the same
/// transaction; bookings and moves schedule their reminders there too, and
/// two active appointments never overlap for one practitioner or one
/// patient (the database refuses it: [`ClinicalError::Conflict`]).
pub trait AppointmentRepository: Send + Sync {
    /// The patient an appointment belongs to (for the relationship check;
    /// no PHI), `None` if there is no such appointment.
    fn patient_of(
        &self,
        ctx: &TenantContext,
        id: AppointmentId,
    ) -> impl Future<Output = Result<Option<PatientId>, ClinicalError>> + Send;

    /// Books (`appointment.create`) and schedules `reminders`. The patient
    /// must exist ([`ClinicalError::NotFound`]); a clash is
    /// [`ClinicalError::Conflict`].
    fn book(
        &self,
        access: &Access,
        new: &NewAppointment,
        reminders: &[PlannedReminder],
    ) -> impl Future<Output = Result<Appointment, ClinicalError>> + Send;

    /// Reads one (`appointment.read`).
    fn get(
        &self,
        access: &Access,
        id: AppointmentId,
    ) -> impl Future<Output = Result<Option<Appointment>, ClinicalError>> + Send;

    /// Moves a booked appointment to `slot` (`appointment.reschedule`),
    /// replacing its pending reminders with `reminders`.
    fn reschedule(
        &self,
        access: &Access,
        id: AppointmentId,
        slot: Slot,
        reminders: &[PlannedReminder],
    ) -> impl Future<Output = Result<Option<Appointment>, ClinicalError>> + Send;

    /// Moves a booked appointment to an end state (`appointment.cancel`,
    /// `.complete`, `.no_show`); its pending reminders are dropped.
    fn finish(
        &self,
        access: &Access,
        id: AppointmentId,
        to: AppointmentStatus,
    ) -> impl Future<Output = Result<Option<Appointment>, ClinicalError>> + Send;

    /// Lists a page (`appointment.list`, one event per patient shown).
    fn list(
        &self,
        access: &Access,
        query: &AppointmentQuery,
    ) -> impl Future<Output = Result<AppointmentPage, ClinicalError>> + Send;

    /// The practitioner's active appointments overlapping `window`, as
    /// times only (`appointment.availability`).
    fn busy(
        &self,
        access: &Access,
        practitioner: &SubjectId,
        window: Slot,
    ) -> impl Future<Output = Result<Vec<Slot>, ClinicalError>> + Send;

    /// Turns each listed channel on (`true`) or off for the patient's
    /// reminders, leaving the channels not listed as they are
    /// (`patient.reminder_preferences.update`); `false` if no such patient.
    fn set_opt_outs(
        &self,
        access: &Access,
        patient: PatientId,
        choices: &[(Channel, bool)],
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// The channels the patient opted out of
    /// (`patient.reminder_preferences.read`); `None` if no such patient.
    fn opt_outs(
        &self,
        access: &Access,
        patient: PatientId,
    ) -> impl Future<Output = Result<Option<Vec<Channel>>, ClinicalError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime, time};

    fn input() -> AppointmentInput {
        AppointmentInput {
            patient_id: Uuid::nil(),
            practitioner: "clinician-ada".into(),
            start: "2026-12-01T09:00:00+01:00".into(),
            end: "2026-12-01T09:30:00+01:00".into(),
            time_zone: "Europe/Berlin".into(),
            reason: Some("follow-up on blood pressure".into()),
        }
    }

    fn fields(r: Result<NewAppointment, ClinicalError>) -> Vec<String> {
        match r {
            Err(ClinicalError::Invalid(e)) => e.into_iter().map(|e| e.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_booking_is_stored_in_utc_and_shown_in_its_zone() {
        let now = datetime!(2026-11-30 00:00 UTC);
        let a = input()
            .parse(&BookingRules::default(), now)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(a.slot.start(), datetime!(2026-12-01 08:00 UTC));
        assert_eq!(
            a.time_zone.local_text(a.slot.start()),
            "Tue 1 Dec 2026, 09:00"
        );
        assert!(!format!("{a:?}").contains("blood pressure"));
    }

    #[test]
    fn every_bad_field_is_named() {
        let now = datetime!(2026-11-30 00:00 UTC);
        let bad = AppointmentInput {
            practitioner: String::new(),
            start: "tomorrow".into(),
            time_zone: "Mars/Olympus_Mons".into(),
            reason: Some("x".repeat(501)),
            ..input()
        };
        assert_eq!(
            fields(bad.parse(&BookingRules::default(), now)),
            vec!["practitioner", "start", "time_zone", "reason"]
        );
        let backwards = AppointmentInput {
            end: "2026-12-01T08:00:00+01:00".into(),
            ..input()
        };
        assert_eq!(
            fields(backwards.parse(&BookingRules::default(), now)),
            vec!["end"]
        );
        let long = AppointmentInput {
            end: "2026-12-01T19:00:00+01:00".into(),
            ..input()
        };
        assert_eq!(
            fields(long.parse(&BookingRules::default(), now)),
            vec!["end"]
        );
    }

    #[test]
    fn local_working_hours_follow_daylight_saving() {
        let berlin = TimeZoneName::parse("Europe/Berlin").unwrap_or_else(|e| panic!("{e:?}"));
        let winter = berlin.local_hours(date!(2026 - 12 - 01), time!(09:00), time!(17:00));
        let summer = berlin.local_hours(date!(2026 - 07 - 01), time!(09:00), time!(17:00));
        assert_eq!(
            winter.map(|s| s.start()),
            Some(datetime!(2026-12-01 08:00 UTC))
        );
        assert_eq!(
            summer.map(|s| s.start()),
            Some(datetime!(2026-07-01 07:00 UTC))
        );
        assert!(TimeZoneName::parse("").is_err());
        assert!(TimeZoneName::parse("UTC").is_ok());
    }

    #[test]
    fn reminders_go_on_every_channel_for_each_offset_ahead() {
        let start = datetime!(2026-12-02 10:00 UTC);
        let plan = plan_reminders(
            start,
            datetime!(2026-12-01 12:00 UTC),
            &super::super::DEFAULT_REMINDER_OFFSETS,
        );
        assert_eq!(
            plan,
            vec![
                PlannedReminder {
                    due_at: datetime!(2026-12-02 08:00 UTC),
                    channel: Channel::Email
                },
                PlannedReminder {
                    due_at: datetime!(2026-12-02 08:00 UTC),
                    channel: Channel::Sms
                },
                PlannedReminder {
                    due_at: datetime!(2026-12-02 08:00 UTC),
                    channel: Channel::Voice
                },
            ]
        );
    }

    #[test]
    fn a_phone_rings_once_per_appointment_at_the_earliest_reminder() {
        let start = datetime!(2026-12-03 10:00 UTC);
        let plan = plan_reminders(
            start,
            datetime!(2026-12-01 12:00 UTC),
            &super::super::DEFAULT_REMINDER_OFFSETS,
        );
        let calls: Vec<_> = plan
            .iter()
            .filter(|r| r.channel == Channel::Voice)
            .collect();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].due_at, datetime!(2026-12-02 10:00 UTC));
        assert_eq!(plan.len(), 5);
    }

    #[test]
    fn local_dates_follow_the_zone() {
        let zone = TimeZoneName::parse("America/New_York").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            zone.local_date(datetime!(2026-12-02 03:00 UTC)),
            Some(time::macros::date!(2026 - 12 - 01))
        );
    }
}
