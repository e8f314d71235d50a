//! A free-slot search as asked for (a practitioner, a day in a time zone,
//! working hours, a slot length and step), checked against the booking
//! rules with every problem reported at once, before
//! [`super::Scheduling::free_slots`] decides who may see the result.

use carapace_tenancy::SubjectId;
use time::macros::{format_description, time};
use time::{Date, Duration, Time};

use super::{BookingRules, Slot, TimeZoneName, practitioner_field};
use crate::{ClinicalError, FieldError};

/// Shortest and longest step between candidate starts, in minutes.
pub const STEP_MINUTES: std::ops::RangeInclusive<u32> = 5..=240;

/// A free-slot search as a client sends it.
#[derive(Clone, Debug, Default)]
pub struct FreeSlotsInput {
    /// The practitioner's subject.
    pub practitioner: String,
    /// The day, `YYYY-MM-DD`, in `time_zone`.
    pub date: String,
    /// IANA zone of the working hours.
    pub time_zone: String,
    /// Start of working hours, `HH:MM` (default 09:00).
    pub from: Option<String>,
    /// End of working hours, `HH:MM` (default 17:00).
    pub to: Option<String>,
    /// Slot length in minutes (default 30; 5 to the longest appointment).
    pub length: Option<u32>,
    /// Minutes between candidate starts (default the length;
    /// [`STEP_MINUTES`]).
    pub step: Option<u32>,
}

/// A checked free-slot search.
#[derive(Clone, Debug)]
pub struct FreeSlotsQuery {
    /// Whose calendar.
    pub practitioner: SubjectId,
    /// The zone the answer is shown in.
    pub zone: TimeZoneName,
    /// The working hours, as instants.
    pub hours: Slot,
    /// Each slot's length.
    pub length: Duration,
    /// Between candidate starts.
    pub step: Duration,
}

impl FreeSlotsInput {
    /// The search, checked against `rules`; every problem at once.
    pub fn parse(self, rules: &BookingRules) -> Result<FreeSlotsQuery, ClinicalError> {
        let mut errors = Vec::new();
        let practitioner = keep(&mut errors, practitioner_field(&self.practitioner));
        let date = keep(
            &mut errors,
            Date::parse(&self.date, format_description!("[year]-[month]-[day]"))
                .map_err(|_| FieldError::new("date", "must be YYYY-MM-DD")),
        );
        let zone = keep(&mut errors, TimeZoneName::parse(&self.time_zone));
        let clock = |field: &str, raw: Option<&str>, default: Time| match raw {
            None => Ok(default),
            Some(t) => Time::parse(t, format_description!("[hour]:[minute]"))
                .map_err(|_| FieldError::new(field, "must be HH:MM")),
        };
        let from = keep(
            &mut errors,
            clock("from", self.from.as_deref(), time!(09:00)),
        );
        let to = keep(&mut errors, clock("to", self.to.as_deref(), time!(17:00)));
        let max = u32::try_from(rules.max_length.whole_minutes()).unwrap_or(480);
        let length = self.length.unwrap_or(30);
        if !(5..=max).contains(&length) {
            errors.push(FieldError::new(
                "length",
                format!("must be between 5 and {max} minutes"),
            ));
        }
        let step = self.step.unwrap_or(length);
        if !STEP_MINUTES.contains(&step) {
            errors.push(FieldError::new("step", "must be between 5 and 240 minutes"));
        }
        let (Some(practitioner), Some(date), Some(zone), Some(from), Some(to)) =
            (practitioner, date, zone, from, to)
        else {
            return Err(ClinicalError::Invalid(errors));
        };
        let hours = zone.local_hours(date, from, to);
        if hours.is_none() {
            errors.push(FieldError::new("to", "must be after from"));
        }
        match hours {
            Some(hours) if errors.is_empty() => Ok(FreeSlotsQuery {
                practitioner,
                zone,
                hours,
                length: Duration::minutes(length.into()),
                step: Duration::minutes(step.into()),
            }),
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

/// The value of `r`, or its error added to `errors`.
fn keep<T>(errors: &mut Vec<FieldError>, r: Result<T, FieldError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: FreeSlotsInput) -> Vec<String> {
        match input.parse(&BookingRules::default()) {
            Err(ClinicalError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not refused: {other:?}"),
        }
    }

    fn monday() -> FreeSlotsInput {
        FreeSlotsInput {
            practitioner: "dr-ada".into(),
            date: "2026-12-07".into(),
            time_zone: "Europe/Paris".into(),
            ..FreeSlotsInput::default()
        }
    }

    #[test]
    fn a_day_in_a_zone_becomes_working_hours_in_that_zone() {
        let q = monday()
            .parse(&BookingRules::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        // 09:00-17:00 in Paris is 08:00-16:00 UTC in December.
        assert_eq!(q.hours.start().hour(), 8);
        assert_eq!(q.hours.end().hour(), 16);
        assert_eq!(
            (q.length, q.step),
            (Duration::minutes(30), Duration::minutes(30))
        );
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let wrong = FreeSlotsInput {
            practitioner: String::new(),
            date: "07/12/2026".into(),
            time_zone: "Mars/Olympus".into(),
            from: Some("9am".into()),
            length: Some(4),
            step: Some(241),
            ..FreeSlotsInput::default()
        };
        assert_eq!(
            fields(wrong),
            [
                "practitioner",
                "date",
                "time_zone",
                "from",
                "length",
                "step"
            ]
        );
        let backwards = FreeSlotsInput {
            from: Some("17:00".into()),
            to: Some("09:00".into()),
            ..monday()
        };
        assert_eq!(fields(backwards), ["to"]);
        let too_long = FreeSlotsInput {
            length: Some(24 * 60),
            step: Some(30),
            ..monday()
        };
        assert_eq!(fields(too_long), ["length"]);
    }
}
