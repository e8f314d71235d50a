//! Appointment reminders: the message (built by one function, carrying the
//! minimum) and the [`Notifier`] port the delivery job sends through.

use std::fmt;
use std::future::Future;

use carapace_phi_crypto::Phi;
use time::OffsetDateTime;

use super::{Channel, TimeZoneName};

/// One reminder, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct ReminderMessage {
    /// How.
    pub channel: Channel,
    /// The patient's address or phone number.
    pub to: Phi<String>,
    /// The text: see [`reminder_text`].
    pub text: String,
    /// The same for every attempt of one reminder, so a receiver can drop
    /// repeats (delivery is at least once).
    pub idempotency_key: String,
    /// The reminder (a call's keypad answer comes back to it).
    pub reminder: uuid::Uuid,
    /// The organization.
    pub org: carapace_tenancy::OrgId,
    /// When the appointment starts (a call is never placed after).
    pub starts_at: OffsetDateTime,
    /// The appointment's zone (calls keep to its calling hours).
    pub zone: TimeZoneName,
}

impl fmt::Debug for ReminderMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReminderMessage")
            .field("channel", &self.channel)
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

/// The subject line of a reminder e-mail.
pub const REMINDER_SUBJECT: &str = "Appointment reminder";

/// The reminder text: the appointment's local date and time and its zone,
/// nothing else. No practitioner, no reason, no diagnosis, no notes, no
/// name: a message read on a lock screen or by someone else reveals only
/// that there is an appointment.
pub fn reminder_text(start: OffsetDateTime, zone: &TimeZoneName) -> String {
    format!(
        "Reminder: you have an appointment on {} ({}). To change it, please contact your clinic.",
        zone.local_text(start),
        zone.as_str()
    )
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// Worth retrying later (timeout, 5xx, 429, connection refused).
    #[error("temporary delivery failure: {0}")]
    Temporary(String),
    /// Retrying will not help (bad address, 4xx).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
    /// Not now: outside the calling hours; try again at this instant.
    #[error("not before {0}")]
    NotBefore(OffsetDateTime),
    /// Not at all: no calling hours are left before the appointment.
    #[error("no calling hours left before the appointment")]
    TooLate,
    /// This deployment has no adapter for the channel.
    #[error("channel not configured")]
    NotConfigured,
}

/// Sends reminders. Adapters: SMTP e-mail and a Twilio-compatible SMS API
/// (in `carapace-infra`).
pub trait Notifier: Send + Sync {
    /// Sends `message` once.
    fn send(
        &self,
        message: &ReminderMessage,
    ) -> impl Future<Output = Result<(), NotifyError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_text_holds_the_time_and_zone_and_nothing_else() {
        let zone = TimeZoneName::parse("America/New_York").unwrap_or_else(|e| panic!("{e:?}"));
        let text = reminder_text(datetime!(2026-12-01 14:30 UTC), &zone);
        assert_eq!(
            text,
            "Reminder: you have an appointment on Tue 1 Dec 2026, 09:30 (America/New_York). \
             To change it, please contact your clinic."
        );
    }

    #[test]
    fn a_message_does_not_print_its_recipient_or_text() {
        let m = ReminderMessage {
            channel: Channel::Sms,
            to: Phi::new("+15550100".into()),
            text: "see you on Tuesday".into(),
            idempotency_key: "k".into(),
            reminder: uuid::Uuid::nil(),
            org: carapace_tenancy::OrgId::generate(),
            starts_at: datetime!(2026-12-01 14:30 UTC),
            zone: TimeZoneName::parse("UTC").unwrap_or_else(|e| panic!("{e:?}")),
        };
        let printed = format!("{m:?}");
        assert!(!printed.contains("555") && !printed.contains("Tuesday"));
    }
}
