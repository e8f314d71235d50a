//! Appointments in storage: the database refuses double bookings even when
//! they race, reminders live and die with their appointment, and the
//! deliverer sends each due reminder through the real adapters (SMS to a
//! local Twilio-compatible stand-in, e-mail to the outbox), retries
//! temporary failures with the same idempotency key, and honours opt-outs.

use std::sync::Arc;

use carapace_clinical::ClinicalError;
use carapace_clinical::appointment::{
    AppointmentInput, AppointmentRepository, AppointmentStatus, BookingRules, Channel,
    DEFAULT_REMINDER_OFFSETS, NewAppointment, PlannedReminder, Slot, plan_reminders,
};
use carapace_clinical::patient::{PatientId, PatientInput, PatientRepository};
use carapace_infra::mail::LettreMailer;
use carapace_infra::outbound::{OutboundPolicy, SafeHttp};
use carapace_infra::sms::{SmsSettings, TwilioSms};
use carapace_infra::{Channels, Database, ReminderDeliverer, SeaAppointments, SeaPatients};
use carapace_tenancy::TenantContext;
use carapace_testkit::receiver::{Answer, Receiver};
use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
use time::{Duration, OffsetDateTime};

use crate::support::{acc, keys, new_org, sqlite};

/// An hour-aligned instant `days` from now (whole seconds).
fn ahead(days: i64) -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() + Duration::days(days);
    t.replace_time(time::macros::time!(10:00))
}

async fn patient(repo: &SeaPatients, ctx: &TenantContext, name: &str) -> PatientId {
    let d = PatientInput {
        given_name: name.into(),
        family_name: "Roe".into(),
        birth_date: "1980-02-03".into(),
        member_id: None,
        phone: Some("+1 555 010 0199".into()),
        email: Some("patient@example.org".into()),
        sex: None,
    }
    .parse(time::macros::date!(2026 - 01 - 01))
    .unwrap_or_else(|e| panic!("{e:?}"));
    repo.create(&acc(ctx), &d, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id
}

fn booking(
    patient: PatientId,
    practitioner: &str,
    start: OffsetDateTime,
    minutes: i64,
) -> NewAppointment {
    AppointmentInput {
        patient_id: patient.as_uuid(),
        practitioner: practitioner.into(),
        start: start
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        end: (start + Duration::minutes(minutes))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        time_zone: "Europe/Berlin".into(),
        reason: Some("Quarzite rash follow-up".into()),
    }
    .parse(&BookingRules::default(), OffsetDateTime::now_utc())
    .unwrap_or_else(|e| panic!("{e:?}"))
}

struct Fixture {
    db: Database,
    patients: SeaPatients,
    appointments: SeaAppointments,
    ctx: TenantContext,
}

async fn fixture(db: Database) -> Fixture {
    let k = keys(&db);
    let ctx = new_org(&db).await;
    Fixture {
        patients: SeaPatients::new(db.clone(), k.clone()),
        appointments: SeaAppointments::new(db.clone(), k),
        ctx,
        db,
    }
}

/// Books one slot from `n` tasks at once, each for another patient with the
/// same practitioner, then each for the same patient with another
/// practitioner: exactly one wins each time, the rest are `slot_taken`.
async fn races(f: Fixture, n: usize) {
    let start = ahead(3);
    let mut patients = Vec::new();
    for i in 0..n {
        patients.push(patient(&f.patients, &f.ctx, &format!("P{i}")).await);
    }
    let repo = Arc::new(f.appointments.clone());
    for same_practitioner in [true, false] {
        let at = if same_practitioner {
            start
        } else {
            start + Duration::hours(2)
        };
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (repo, access) = (repo.clone(), acc(&f.ctx));
                let new = if same_practitioner {
                    booking(patients[i], "dr-same", at, 30)
                } else {
                    booking(
                        patients[0],
                        &format!("dr-{i}"),
                        at + Duration::minutes(i64::try_from(i).unwrap_or(0)),
                        30,
                    )
                };
                tokio::spawn(async move { repo.book(&access, &new, &[]).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap_or_else(|e| panic!("{e}")) {
                Ok(_) => won += 1,
                Err(ClinicalError::Conflict { code, .. }) => assert_eq!(code, "slot_taken"),
                Err(e) => panic!("unexpected: {e:?}"),
            }
        }
        assert_eq!(
            won, 1,
            "exactly one booking wins (same practitioner: {same_practitioner})"
        );
    }
    // Touching is not overlapping; a cancelled appointment frees its slot.
    let after = f
        .appointments
        .book(
            &acc(&f.ctx),
            &booking(patients[1], "dr-same", start + Duration::minutes(30), 30),
            &[],
        )
        .await;
    assert!(after.is_ok(), "{after:?}");
    let list = f
        .appointments
        .list(
            &acc(&f.ctx),
            &carapace_clinical::appointment::AppointmentQuery {
                scope: carapace_clinical::appointment::AppointmentScope::Practitioner(
                    carapace_tenancy::SubjectId::parse("dr-same").unwrap_or_else(|e| panic!("{e}")),
                ),
                from: None,
                to: None,
                limit: Default::default(),
                after: None,
                status: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = list
        .items
        .first()
        .map(|a| a.id)
        .unwrap_or_else(|| panic!("booked"));
    f.appointments
        .finish(&acc(&f.ctx), first, AppointmentStatus::Cancelled)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = f
        .appointments
        .book(
            &acc(&f.ctx),
            &booking(patients[2], "dr-same", start, 30),
            &[],
        )
        .await;
    assert!(again.is_ok(), "{again:?}");
    // A move onto a taken slot is refused too, by the same rule.
    let moved = f
        .appointments
        .reschedule(
            &acc(&f.ctx),
            again.map(|a| a.id).unwrap_or_else(|e| panic!("{e}")),
            Slot::new(start + Duration::minutes(40), start + Duration::minutes(70))
                .unwrap_or_else(|| panic!("slot")),
            &[],
        )
        .await;
    assert!(
        matches!(
            moved,
            Err(ClinicalError::Conflict {
                code: "slot_taken",
                ..
            })
        ),
        "{moved:?}"
    );
}

#[tokio::test]
async fn sqlite_concurrent_bookings_of_one_slot_have_one_winner() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    races(fixture(sqlite(&dir).await).await, 8).await;
}

#[tokio::test]
async fn postgres_concurrent_bookings_of_one_slot_have_one_winner() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_concurrent_bookings_of_one_slot_have_one_winner")
            .await
    else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    races(fixture(db).await, 16).await;
}

#[tokio::test]
async fn postgres_refuses_overlaps_itself_even_without_the_check() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_refuses_overlaps_itself_even_without_the_check").await
    else {
        return;
    };
    let owner = sea_orm::Database::connect(pg.owner_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let org = uuid::Uuid::now_v7();
    let patient = uuid::Uuid::now_v7();
    let setup = format!(
        "INSERT INTO organizations (id, slug, name, created_at) VALUES ('{org}', 'raw-org', 'Raw', now());
         INSERT INTO patients (org_id, id, key_version, given_name, family_name, birth_date, name_dob_idx, created_at, updated_at)
           VALUES ('{org}', '{patient}', 1, '\\x00', '\\x00', '\\x00', '\\x00', now(), now());"
    );
    owner
        .execute_unprepared(&setup)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let insert = |id: uuid::Uuid, from: &str, to: &str, status: &str| {
        format!(
            "INSERT INTO appointments (org_id, id, patient_id, practitioner, starts_at, ends_at, time_zone, status, key_version, created_at, updated_at)
             VALUES ('{org}', '{id}', '{patient}', 'dr', '{from}', '{to}', 'UTC', '{status}', 1, now(), now())"
        )
    };
    let ok = |sql: String| {
        let owner = owner.clone();
        async move {
            owner
                .execute_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
        }
    };
    assert!(
        ok(insert(
            uuid::Uuid::now_v7(),
            "2030-01-01 09:00Z",
            "2030-01-01 10:00Z",
            "booked"
        ))
        .await
        .is_ok()
    );
    let clash = ok(insert(
        uuid::Uuid::now_v7(),
        "2030-01-01 09:30Z",
        "2030-01-01 10:30Z",
        "booked",
    ))
    .await;
    assert!(
        clash.is_err_and(|e| e.to_string().contains("appointments_")),
        "exclusion constraint"
    );
    assert!(
        ok(insert(
            uuid::Uuid::now_v7(),
            "2030-01-01 09:30Z",
            "2030-01-01 10:30Z",
            "cancelled"
        ))
        .await
        .is_ok()
    );
    assert!(
        ok(insert(
            uuid::Uuid::now_v7(),
            "2030-01-01 10:00Z",
            "2030-01-01 11:00Z",
            "booked"
        ))
        .await
        .is_ok()
    );
    let backwards = ok(insert(
        uuid::Uuid::now_v7(),
        "2030-01-02 10:00Z",
        "2030-01-02 09:00Z",
        "booked",
    ))
    .await;
    assert!(backwards.is_err());
}

async fn count(raw: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    raw.query_one_raw(Statement::from_string(DbBackend::Sqlite, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(-1)
}

async fn reminder_rows(raw: &sea_orm::DatabaseConnection, status: &str) -> i64 {
    let sql = format!("SELECT count(*) AS n FROM appointment_reminders WHERE status = '{status}'");
    count(raw, &sql).await
}

fn sms(receiver: &Receiver) -> TwilioSms {
    TwilioSms::new(
        SafeHttp::new(OutboundPolicy {
            https_only: false,
            allowed_hosts: vec!["127.0.0.1".into()],
            allow_loopback: true,
            timeout: std::time::Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
        }),
        SmsSettings {
            base_url: receiver.base.clone(),
            account_sid: "AC123".into(),
            auth_token: "twilio-token".to_owned().into(),
            from: "+15550001111".into(),
        },
    )
}

/// `plan` without its call (reminder calls are tested with the voice
/// stand-in, in the server's tests).
fn text_only(plan: Vec<PlannedReminder>) -> Vec<PlannedReminder> {
    plan.into_iter()
        .filter(|r| r.channel != Channel::Voice)
        .collect()
}

#[tokio::test]
async fn reminders_follow_their_appointment_and_are_delivered_at_least_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let f = fixture(sqlite(&dir).await).await;
    let raw = sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = patient(&f.patients, &f.ctx, "Remindee").await;
    let start = ahead(2);
    let now = OffsetDateTime::now_utc();
    let plan = text_only(plan_reminders(start, now, &DEFAULT_REMINDER_OFFSETS));
    assert_eq!(plan.len(), 4, "two offsets on two channels");
    let a = f
        .appointments
        .book(&acc(&f.ctx), &booking(p, "dr-r", start, 30), &plan)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reminder_rows(&raw, "pending").await, 4);
    // Moving it replaces the pending reminders; cancelling drops them.
    let later = start + Duration::days(1);
    let replan = text_only(plan_reminders(later, now, &[Duration::hours(1)]));
    f.appointments
        .reschedule(
            &acc(&f.ctx),
            a.id,
            Slot::new(later, later + Duration::minutes(30)).unwrap_or_else(|| panic!("slot")),
            &replan,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reminder_rows(&raw, "pending").await, 2);

    let receiver = Receiver::start().await;
    let outbox = dir.path().join("outbox");
    let deliverer = ReminderDeliverer::new(
        f.db.clone(),
        f.patients.clone(),
        Channels {
            email: Some(
                LettreMailer::outbox(outbox.clone(), "clinic@example.org")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            sms: Some(sms(&receiver)),
            voice: None::<carapace_infra::reminder_calls::VoiceReminders>,
        },
    );
    // Not due yet: nothing goes out.
    let r = deliverer
        .run_once(now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.sent, r.failed), (0, 0));
    // Due, and the SMS API is down: e-mail goes, SMS waits for a retry.
    receiver.answer(Answer::status("503 Service Unavailable"));
    let due = later;
    let r = deliverer
        .run_once(due)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.sent, r.failed), (1, 1));
    let mails: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .collect();
    assert_eq!(mails.len(), 1);
    let mail = std::fs::read_to_string(mails[0].path()).unwrap_or_default();
    assert!(
        mail.contains("Appointment reminder") && mail.contains("Europe/Berlin"),
        "{mail}"
    );
    assert!(!mail.contains("Quarzite") && !mail.contains("Remindee") && !mail.contains("dr-r"));
    // The retry comes after the backoff, with the same idempotency key,
    // from a new deliverer: the queue is the database (a restart loses
    // nothing).
    drop(deliverer);
    let deliverer = ReminderDeliverer::new(
        f.db.clone(),
        f.patients.clone(),
        Channels {
            email: Some(
                LettreMailer::outbox(outbox.clone(), "clinic@example.org")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            sms: Some(sms(&receiver)),
            voice: None::<carapace_infra::reminder_calls::VoiceReminders>,
        },
    );
    receiver.answer(Answer::status("201 Created"));
    let r = deliverer
        .run_once(due)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.sent, 0, "backing off");
    let r = deliverer
        .run_once(due + Duration::minutes(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.sent, 1);
    let calls = receiver.received();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].header("idempotency-key"),
        calls[1].header("idempotency-key")
    );
    assert!(
        calls[1]
            .line
            .starts_with("POST /2010-04-01/Accounts/AC123/Messages.json")
    );
    assert!(
        calls[1]
            .header("authorization")
            .is_some_and(|h| h.starts_with("Basic "))
    );
    let body = String::from_utf8_lossy(&calls[1].body).to_string();
    assert!(
        body.contains("To=%2B1+555+010+0199") && body.contains("Body=Reminder"),
        "{body}"
    );
    assert!(!body.contains("Quarzite"));
    assert_eq!(reminder_rows(&raw, "sent").await, 2);
    assert_eq!(reminder_rows(&raw, "pending").await, 0);
    // Nothing is sent twice once marked.
    let r = deliverer
        .run_once(due + Duration::hours(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.sent, 0);

    // An opted-out channel is skipped; a permanent refusal is not retried.
    let b_start = ahead(5);
    f.appointments
        .book(
            &acc(&f.ctx),
            &booking(p, "dr-r", b_start, 30),
            &text_only(plan_reminders(b_start, now, &[Duration::hours(2)])),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        f.appointments
            .set_opt_outs(
                &acc(&f.ctx),
                p,
                &[(Channel::Email, false), (Channel::Sms, true)]
            )
            .await
            .unwrap_or(false)
    );
    receiver.answer(Answer::status("400 Bad Request"));
    let r = deliverer
        .run_once(b_start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.sent, r.skipped, r.failed), (0, 1, 1));
    assert_eq!(reminder_rows(&raw, "failed").await, 1);
    assert_eq!(reminder_rows(&raw, "skipped").await, 1);
    // Cancelling drops what is still pending.
    let c_start = ahead(6);
    let c = f
        .appointments
        .book(
            &acc(&f.ctx),
            &booking(p, "dr-r", c_start, 30),
            &text_only(plan_reminders(c_start, now, &[Duration::hours(2)])),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reminder_rows(&raw, "pending").await, 2);
    f.appointments
        .finish(&acc(&f.ctx), c.id, AppointmentStatus::Cancelled)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reminder_rows(&raw, "pending").await, 0);
    // Each send is in the audit trail as the system, with no content.
    let sent = count(
        &raw,
        "SELECT count(*) AS n FROM audit_events WHERE action = 'appointment.reminder_sent'",
    )
    .await;
    assert_eq!(sent, 4, "two sent, one skipped, one failed");
}
