//! Outgoing mail.

use secrecy::{ExposeSecret as _, SecretString};

use super::checks::ConfigProblem;

/// Outgoing mail (password reset, reminders).
#[derive(Clone, Debug)]
pub struct MailSection {
    /// SMTP server for password-reset mail (`smtps://user:pass@host:465`
    /// or `smtp://host:587?tls=required`). In `dev`, unset means mail is
    /// written to `<data_dir>/outbox/`.
    pub smtp_url: Option<SecretString>,
    /// Sender of Carapace's mail.
    pub from: String,
}

impl MailSection {
    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if let Some(url) = &self.smtp_url {
            let u = url.expose_secret();
            if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
                p.push(ConfigProblem::new(
                    "CARAPACE_SMTP_URL",
                    "must start with smtp:// or smtps://",
                ));
            }
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            p.push(ConfigProblem::new(
                "CARAPACE_MAIL_FROM",
                "must be an address like Carapace <no-reply@example.org>",
            ));
        }
    }
}
