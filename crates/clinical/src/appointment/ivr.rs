//! Reminder calls: what is said (the time and "your clinic", nothing
//! else), when a phone may ring (the organization's calling hours in the
//! appointment's zone, never after it starts) and what a key press means.

use std::future::Future;

use carapace_audit::Access;
use time::{Duration, OffsetDateTime, Time};

use super::TimeZoneName;
use crate::ClinicalError;

/// What the patient pressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReminderAnswer {
    /// 1: keep the appointment.
    Confirm,
    /// 2: cancel it.
    Cancel,
    /// 3: speak with the clinic.
    Clinic,
}

impl ReminderAnswer {
    /// Every answer.
    pub const ALL: [ReminderAnswer; 3] = [Self::Confirm, Self::Cancel, Self::Clinic];

    /// The answer keyed as `digits` (exactly one of 1, 2, 3).
    pub fn from_digits(digits: &str) -> Option<Self> {
        match digits {
            "1" => Some(Self::Confirm),
            "2" => Some(Self::Cancel),
            "3" => Some(Self::Clinic),
            _ => None,
        }
    }

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
            Self::Clinic => "clinic",
        }
    }

    /// The answer named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// What the caller hears after pressing it.
    pub fn reply(self) -> &'static str {
        match self {
            Self::Confirm => "Thank you. Your appointment is confirmed. Goodbye.",
            Self::Cancel => "Your appointment is cancelled. Goodbye.",
            Self::Clinic => "Connecting you to your clinic.",
        }
    }
}

/// What a reminder call says before the menu: the appointment's local
/// date, time and zone. No name, no practitioner, no reason: whoever
/// answers the phone learns only that there is an appointment.
pub fn reminder_call_text(start: OffsetDateTime, zone: &TimeZoneName) -> String {
    format!(
        "Hello. This is a reminder from your clinic: you have an appointment on {} ({}). \
         Press 1 to confirm, 2 to cancel, or 3 to speak with the clinic.",
        zone.local_text(start),
        zone.as_str().replace('_', " ")
    )
}

/// When an organization's phones may ring: from `from` o'clock to `until`
/// o'clock, local time of the appointment's zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallingHours {
    /// First hour (0-23).
    pub from: u8,
    /// Hour calls stop (1-24, after `from`).
    pub until: u8,
}

impl CallingHours {
    /// 9:00 to 18:00.
    pub const DEFAULT: CallingHours = CallingHours { from: 9, until: 18 };

    /// Hours if `from` < `until` ≤ 24.
    pub fn new(from: u8, until: u8) -> Option<Self> {
        (from < until && until <= 24).then_some(Self { from, until })
    }
}

/// When a reminder call may be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallTime {
    /// Now.
    Now,
    /// Not before this instant.
    At(OffsetDateTime),
    /// Not at all: no calling hours remain before `before`.
    Never,
}

/// When a call may be placed at `now` for an appointment starting at
/// `before`, within `hours` of `zone`.
pub fn call_time(
    now: OffsetDateTime,
    zone: &TimeZoneName,
    hours: CallingHours,
    before: OffsetDateTime,
) -> CallTime {
    let Some(today) = zone.local_date(now) else {
        return CallTime::Never;
    };
    let mut day = today;
    for _ in 0..3 {
        let start = Time::from_hms(hours.from, 0, 0)
            .ok()
            .and_then(|t| zone.instant(day, t));
        let end = match hours.until {
            24 => day.next_day().and_then(|d| zone.instant(d, Time::MIDNIGHT)),
            h => Time::from_hms(h, 0, 0)
                .ok()
                .and_then(|t| zone.instant(day, t)),
        };
        if let (Some(start), Some(end)) = (start, end)
            && now < end
        {
            let at = now.max(start);
            return if at >= before {
                CallTime::Never
            } else if at == now {
                CallTime::Now
            } else {
                CallTime::At(at)
            };
        }
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    CallTime::Never
}

/// What became of a keyed answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// Recorded (and acted on) now.
    Recorded,
    /// The call was answered already: a replay.
    Replay,
    /// No reminder call of that id was made here.
    Unknown,
}

/// Where reminder calls' answers go.
pub trait ReminderAnswers: Send + Sync {
    /// Records `answer` to reminder call `reminder`, once, as the patient
    /// on the phone, and acts on it in the same transaction: `Cancel`
    /// cancels the appointment if it is still booked
    /// (`appointment.confirm`, `appointment.cancel`,
    /// `appointment.reminder_answer`).
    fn answer(
        &self,
        access: &Access,
        reminder: uuid::Uuid,
        answer: ReminderAnswer,
    ) -> impl Future<Output = Result<AnswerOutcome, ClinicalError>> + Send;
}

/// How long a reminder call may ring and wait for a key.
pub const ANSWER_TIMEOUT: Duration = Duration::seconds(8);

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn boston() -> TimeZoneName {
        TimeZoneName::parse("America/New_York").unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn keys_mean_one_thing_each() {
        assert_eq!(
            ReminderAnswer::from_digits("1"),
            Some(ReminderAnswer::Confirm)
        );
        assert_eq!(
            ReminderAnswer::from_digits("2"),
            Some(ReminderAnswer::Cancel)
        );
        assert_eq!(
            ReminderAnswer::from_digits("3"),
            Some(ReminderAnswer::Clinic)
        );
        for other in ["", "0", "4", "12", "#", "*", "1 "] {
            assert_eq!(ReminderAnswer::from_digits(other), None, "{other:?}");
        }
        for a in ReminderAnswer::ALL {
            assert_eq!(ReminderAnswer::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn the_call_says_the_time_and_nothing_else() {
        let text = reminder_call_text(datetime!(2026-12-01 14:30 UTC), &boston());
        assert!(
            text.contains("Tue 1 Dec 2026, 09:30 (America/New York)"),
            "{text}"
        );
        assert!(text.contains("Press 1 to confirm, 2 to cancel, or 3"));
    }

    #[test]
    fn phones_ring_only_in_calling_hours_of_the_appointments_zone() {
        let (zone, hours) = (boston(), CallingHours::DEFAULT);
        let appointment = datetime!(2026-12-03 15:00 UTC);
        // 11:00 in Boston: now.
        assert_eq!(
            call_time(datetime!(2026-12-01 16:00 UTC), &zone, hours, appointment),
            CallTime::Now
        );
        // 06:00 in Boston: at 09:00 local.
        assert_eq!(
            call_time(datetime!(2026-12-01 11:00 UTC), &zone, hours, appointment),
            CallTime::At(datetime!(2026-12-01 14:00 UTC))
        );
        // 20:00 in Boston: the next morning.
        assert_eq!(
            call_time(datetime!(2026-12-02 01:00 UTC), &zone, hours, appointment),
            CallTime::At(datetime!(2026-12-02 14:00 UTC))
        );
        // 07:00 for an 08:30 appointment: no calling hour before it.
        assert_eq!(
            call_time(
                datetime!(2026-12-03 12:00 UTC),
                &zone,
                hours,
                datetime!(2026-12-03 13:30 UTC)
            ),
            CallTime::Never
        );
        assert_eq!(CallingHours::new(18, 9), None);
        assert_eq!(CallingHours::new(0, 25), None);
    }
}
