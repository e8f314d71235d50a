//! The [`Mailer`] adapters: SMTP (lettre, TLS by URL) and, for development,
//! an outbox directory of `.eml` files. Message bodies can hold secrets
//! (reset codes): they are never logged.

use std::path::PathBuf;

use carapace_auth::AuthError;
use carapace_auth::local::{Mailer, OutgoingMail};
use carapace_clinical::appointment::{Notifier, NotifyError, REMINDER_SUBJECT, ReminderMessage};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

/// Why a mailer could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The sender address is not a mailbox.
    #[error("CARAPACE_MAIL_FROM is not an e-mail address")]
    From,
    /// The SMTP URL is not usable.
    #[error("CARAPACE_SMTP_URL is not a valid smtp:// or smtps:// URL")]
    Url,
}

/// How long a whole SMTP send may take.
pub const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

enum Transport {
    /// The transport, and how long a whole send may take.
    Smtp(AsyncSmtpTransport<Tokio1Executor>, std::time::Duration),
    Outbox(PathBuf),
    /// No way to send: every message fails (nothing is written anywhere).
    Disabled,
}

/// Sends mail through SMTP or writes it to an outbox directory.
pub struct LettreMailer {
    from: Mailbox,
    transport: Transport,
}

impl std::fmt::Debug for LettreMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.transport {
            Transport::Smtp(..) => "smtp",
            Transport::Outbox(_) => "outbox",
            Transport::Disabled => "disabled",
        };
        f.debug_struct("LettreMailer")
            .field("transport", &kind)
            .finish_non_exhaustive()
    }
}

impl LettreMailer {
    /// SMTP at `url` (`smtps://user:pass@host:465`, or `smtp://host:587?tls=required`),
    /// each send given up after [`SMTP_TIMEOUT`].
    pub fn smtp(url: &SecretString, from: &str) -> Result<Self, MailError> {
        Self::smtp_within(url, from, SMTP_TIMEOUT)
    }

    /// [`Self::smtp`], giving up on a send after `timeout`: a server that
    /// accepts and then says nothing (or a network that drops the packets)
    /// costs a send that long instead of holding it for good.
    pub fn smtp_within(
        url: &SecretString,
        from: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|_| MailError::Url)?
            .build();
        Ok(Self {
            from: from.parse().map_err(|_| MailError::From)?,
            transport: Transport::Smtp(transport, timeout),
        })
    }

    /// Sends nothing: every message fails, so what needs mail (reminders by
    /// e-mail) fails and is retried or given up, and no message (which may
    /// hold PHI) is ever written to disk instead.
    pub fn disabled(from: &str) -> Result<Self, MailError> {
        Ok(Self {
            from: from.parse().map_err(|_| MailError::From)?,
            transport: Transport::Disabled,
        })
    }

    /// Writes each message to `<dir>/<id>.eml` (mode 0600).
    pub fn outbox(dir: PathBuf, from: &str) -> Result<Self, MailError> {
        Ok(Self {
            from: from.parse().map_err(|_| MailError::From)?,
            transport: Transport::Outbox(dir),
        })
    }
}

impl Mailer for LettreMailer {
    async fn send(&self, mail: OutgoingMail) -> Result<(), AuthError> {
        let to: Mailbox = mail
            .to
            .as_str()
            .parse()
            .map_err(|_| AuthError::Unavailable)?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.expose_secret().to_owned())
            .map_err(|_| AuthError::Unavailable)?;
        self.deliver(message)
            .await
            .map_err(|()| AuthError::Unavailable)
    }
}

impl LettreMailer {
    async fn deliver(&self, message: Message) -> Result<(), ()> {
        match &self.transport {
            // lettre's own timeout does not cover every wait (a server
            // that accepts and never greets held a send for good): the
            // whole exchange is bounded here.
            Transport::Smtp(smtp, timeout) => {
                match tokio::time::timeout(*timeout, smtp.send(message)).await {
                    Ok(sent) => sent.map(|_| ()).map_err(|e| {
                        tracing::error!(error = %e, "SMTP delivery failed");
                    }),
                    Err(_) => {
                        tracing::error!(?timeout, "SMTP delivery timed out");
                        Err(())
                    }
                }
            }
            Transport::Outbox(dir) => write_eml(dir, &message.formatted()).map_err(|e| {
                tracing::error!(error = %e, dir = %dir.display(), "could not write to the mail outbox");
            }),
            Transport::Disabled => {
                tracing::error!("no mail transport (CARAPACE_SMTP_URL is unset): message not sent");
                Err(())
            }
        }
    }
}

/// Appointment reminders by e-mail. The idempotency key becomes the
/// Message-ID, the same on every attempt, so a receiving system can drop a
/// repeat.
impl Notifier for LettreMailer {
    async fn send(&self, message: &ReminderMessage) -> Result<(), NotifyError> {
        let to: Mailbox = message
            .to
            .expose_phi()
            .parse()
            .map_err(|_| NotifyError::Permanent("not an e-mail address".into()))?;
        let host = self.from.email.domain().to_owned();
        let mail = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(REMINDER_SUBJECT)
            .message_id(Some(format!("<{}@{host}>", message.idempotency_key)))
            .header(ContentType::TEXT_PLAIN)
            .body(message.text.clone())
            .map_err(|_| NotifyError::Permanent("message could not be built".into()))?;
        self.deliver(mail)
            .await
            .map_err(|()| NotifyError::Temporary("mail delivery failed".into()))
    }
}

fn write_eml(dir: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.eml", uuid::Uuid::now_v7()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use carapace_auth::local::Email;

    use super::*;

    fn mail() -> OutgoingMail {
        OutgoingMail {
            to: Email::parse("jane@example.org").unwrap_or_else(|| unreachable!()),
            subject: "Your appointment".into(),
            body: SecretString::from("Tomorrow at 9:00 with Dr. Ada"),
        }
    }

    /// Without SMTP in production nothing is sent and nothing lands on
    /// disk; the dev outbox writes the message.
    #[tokio::test]
    async fn a_disabled_mailer_fails_and_writes_nothing() {
        let from = "Carapace <no-reply@carapace.invalid>";
        let disabled = LettreMailer::disabled(from).unwrap_or_else(|e| panic!("{e}"));
        assert!(Mailer::send(&disabled, mail()).await.is_err());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outbox =
            LettreMailer::outbox(dir.path().join("outbox"), from).unwrap_or_else(|e| panic!("{e}"));
        assert!(Mailer::send(&outbox, mail()).await.is_ok());
        let written = std::fs::read_dir(dir.path().join("outbox")).map_or(0, Iterator::count);
        assert_eq!(written, 1);
    }
}
