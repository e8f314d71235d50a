//! Appointments and their reminders.

use super::checks::ConfigProblem;

/// Appointments and their reminders.
#[derive(Clone, Debug)]
pub struct SchedulingSection {
    /// Longest appointment, in minutes (5-1440).
    pub appointment_max_minutes: u32,
    /// When reminders go out before an appointment: comma-separated
    /// offsets like `24h,2h` or `30m` (at most 5).
    pub reminder_offsets: String,
}

impl SchedulingSection {
    /// The reminder offsets, if [`Self::reminder_offsets`] is valid.
    pub fn reminder_offset_list(&self) -> Option<Vec<time::Duration>> {
        let mut out = Vec::new();
        for part in self.reminder_offsets.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (n, unit) = part.split_at(part.len().saturating_sub(1));
            let n: i64 = n.parse().ok().filter(|n| (1..=10_000).contains(n))?;
            out.push(match unit {
                "h" => time::Duration::hours(n),
                "m" => time::Duration::minutes(n),
                _ => return None,
            });
        }
        (out.len() <= 5).then_some(out)
    }

    /// The organization-independent booking rules.
    pub fn booking_rules(&self) -> carapace_clinical::appointment::BookingRules {
        carapace_clinical::appointment::BookingRules {
            max_length: time::Duration::minutes(self.appointment_max_minutes.into()),
            ..Default::default()
        }
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if !(5..=1440).contains(&self.appointment_max_minutes) {
            p.push(ConfigProblem::new(
                "CARAPACE_APPOINTMENT_MAX_MINUTES",
                "must be between 5 and 1440",
            ));
        }
        if self.reminder_offset_list().is_none() {
            p.push(ConfigProblem::new(
                "CARAPACE_REMINDER_OFFSETS",
                "must be up to 5 comma-separated offsets like 24h or 30m",
            ));
        }
    }
}
