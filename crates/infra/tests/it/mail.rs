//! Mail adapters and password reset: the SMTP adapter against a local SMTP
//! stand-in, the outbox adapter, and reset-code expiry.

use std::sync::{Arc, Mutex};

use carapace_auth::AuthError;
use carapace_auth::local::{
    AccountStore as _, Email, Mailer, OutgoingMail, PasswordReset, hash_password,
};
use carapace_auth::{Role, RoleSet};
use carapace_infra::accounts::{SeaAccounts, SeaResets};
use carapace_infra::mail::LettreMailer;
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::support::{new_org, sqlite};

/// A minimal SMTP server on a random local port that accepts every
/// message and keeps its DATA.
async fn smtp_stand_in() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 stand-in ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(buf) = data.as_mut() {
                        if line == "." {
                            if let Ok(mut s) = store.lock() {
                                s.push(std::mem::take(buf));
                            }
                            data = None;
                            let _ = write.write_all(b"250 queued\r\n").await;
                        } else {
                            buf.push_str(&line);
                            buf.push('\n');
                        }
                        continue;
                    }
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250-stand-in\r\n250 OK\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (port, received)
}

fn mail(to: &str, body: &str) -> OutgoingMail {
    OutgoingMail {
        to: Email::parse(to).unwrap_or_else(|| panic!("email")),
        subject: "Test".into(),
        body: SecretString::from(body.to_owned()),
    }
}

#[tokio::test]
async fn smtp_mailer_delivers_to_a_local_smtp_server() {
    let (port, received) = smtp_stand_in().await;
    let url = SecretString::from(format!("smtp://127.0.0.1:{port}"));
    let mailer = LettreMailer::smtp(&url, "Carapace <no-reply@example.org>")
        .unwrap_or_else(|e| panic!("{e}"));
    mailer
        .send(mail("doc@example.org", "code crr_xyz"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = received.lock().map(|r| r.clone()).unwrap_or_default();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("To: doc@example.org"), "{}", got[0]);
    assert!(got[0].contains("code crr_xyz"));
}

#[tokio::test]
async fn appointment_reminders_go_through_smtp_with_a_stable_message_id() {
    use carapace_clinical::appointment::{Channel, Notifier, NotifyError, ReminderMessage};
    let (port, received) = smtp_stand_in().await;
    let url = SecretString::from(format!("smtp://127.0.0.1:{port}"));
    let mailer =
        LettreMailer::smtp(&url, "Clinic <no-reply@example.org>").unwrap_or_else(|e| panic!("{e}"));
    let message = ReminderMessage {
        channel: Channel::Email,
        to: carapace_phi_crypto::Phi::new("pat@example.org".into()),
        text: "Reminder: you have an appointment on Tue 1 Dec 2026, 09:30 (UTC).".into(),
        idempotency_key: "reminder-42".into(),
        reminder: uuid::Uuid::nil(),
        org: carapace_tenancy::OrgId::generate(),
        starts_at: time::macros::datetime!(2026-12-01 09:30 UTC),
        zone: carapace_clinical::appointment::TimeZoneName::parse("UTC")
            .unwrap_or_else(|e| panic!("{e:?}")),
    };
    for _ in 0..2 {
        Notifier::send(&mailer, &message)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let got = received.lock().map(|r| r.clone()).unwrap_or_default();
    assert_eq!(got.len(), 2, "at least once: a repeat is sent again");
    for mail in &got {
        assert!(mail.contains("To: pat@example.org"), "{mail}");
        assert!(mail.contains("Subject: Appointment reminder"), "{mail}");
        assert!(
            mail.contains("Message-ID: <reminder-42@example.org>"),
            "{mail}"
        );
        assert!(mail.contains("09:30 (UTC)"), "{mail}");
    }
    let bad = ReminderMessage {
        to: carapace_phi_crypto::Phi::new("not an address".into()),
        ..message
    };
    assert!(matches!(
        Notifier::send(&mailer, &bad).await,
        Err(NotifyError::Permanent(_))
    ));
    let down = LettreMailer::smtp(
        &SecretString::from("smtp://127.0.0.1:9".to_owned()),
        "no-reply@example.org",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let good = ReminderMessage {
        to: carapace_phi_crypto::Phi::new("pat@example.org".into()),
        ..bad
    };
    assert!(matches!(
        Notifier::send(&down, &good).await,
        Err(NotifyError::Temporary(_))
    ));
}

#[tokio::test]
async fn smtp_mailer_reports_an_unreachable_server() {
    let url = SecretString::from("smtp://127.0.0.1:9".to_owned());
    let mailer = LettreMailer::smtp(&url, "no-reply@example.org").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        mailer.send(mail("a@example.org", "x")).await,
        Err(AuthError::Unavailable)
    ));
}

/// A server that accepts the connection and then says nothing (or a
/// network that drops the packets): the send fails within the timeout.
#[tokio::test]
async fn smtp_mailer_gives_up_on_a_server_that_never_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let url = SecretString::from(format!("smtp://127.0.0.1:{port}"));
    let mailer = LettreMailer::smtp_within(
        &url,
        "no-reply@example.org",
        std::time::Duration::from_secs(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        mailer.send(mail("a@example.org", "x")),
    )
    .await
    .unwrap_or_else(|_| panic!("the send hung"));
    assert!(matches!(sent, Err(AuthError::Unavailable)), "{sent:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

#[tokio::test]
async fn outbox_mailer_writes_private_eml_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let outbox = dir.path().join("outbox");
    let mailer = LettreMailer::outbox(outbox.clone(), "no-reply@example.org")
        .unwrap_or_else(|e| panic!("{e}"));
    mailer
        .send(mail("a@example.org", "hello outbox"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(files.len(), 1);
    assert!(
        std::fs::read_to_string(&files[0])
            .unwrap_or_default()
            .contains("hello outbox")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&files[0])
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o077, 0, "only the owner may read mail");
    }
}

/// Keeps the bodies it is asked to send (the outbox and SMTP adapters are
/// tested above; this isolates the reset flow's timing rules).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Mailer for Captured {
    async fn send(&self, mail: OutgoingMail) -> Result<(), AuthError> {
        if let Ok(mut m) = self.0.lock() {
            m.push(mail.body.expose_secret().to_owned());
        }
        Ok(())
    }
}

#[tokio::test]
async fn reset_codes_expire_after_thirty_minutes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let ctx = new_org(&db).await;
    let hash = hash_password(&SecretString::from("the original passphrase".to_owned()))
        .unwrap_or_else(|e| panic!("{e}"));
    SeaAccounts::new(db.clone())
        .create(
            &ctx,
            &Email::parse("doc@example.org").unwrap_or_else(|| panic!("e")),
            Some(hash),
            RoleSet::of(&[Role::Admin]),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let captured = Captured::default();
    let reset = PasswordReset {
        accounts: SeaAccounts::new(db.clone()),
        resets: SeaResets::new(db.clone()),
        mailer: captured.clone(),
        events: std::sync::Arc::new(carapace_infra::audit::SeaAuditLog::new(db.clone())),
    };
    let now = OffsetDateTime::now_utc();
    reset
        .request(ctx.org(), "doc@example.org", now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    reset
        .request(ctx.org(), "nobody@example.org", now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bodies = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(bodies.len(), 1, "only the real account gets mail");
    let code = bodies[0]
        .lines()
        .find(|l| l.starts_with("crr_"))
        .unwrap_or_default()
        .to_owned();
    let code = SecretString::from(code);
    let new = SecretString::from("a fresh new passphrase".to_owned());
    let late = reset
        .confirm(&code, &new, now + time::Duration::minutes(31))
        .await;
    assert!(matches!(late, Err(AuthError::InvalidToken(_))), "{late:?}");
    reset
        .confirm(&code, &new, now + time::Duration::minutes(29))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
