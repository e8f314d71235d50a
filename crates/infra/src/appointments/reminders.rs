//! Reminders: the patient's channel preferences, and the deliverer that sends due reminders through their channels ([`ReminderDeliverer`]).

use super::*;

pub(super) fn preferences_event(
    access: &Access,
    verb: &str,
    patient: PatientId,
    outcome: Outcome,
) -> AuditEvent {
    repo::event(
        access,
        &format!("patient.reminder_preferences.{verb}"),
        "patient",
        Some(patient),
        outcome,
    )
}

pub(super) async fn opted_out(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    patient: Uuid,
) -> Result<Vec<Channel>, ClinicalError> {
    let names: Vec<String> = opt_out::Entity::find()
        .select_only()
        .column(opt_out::Column::Channel)
        .scoped(ctx)
        .filter(opt_out::Column::PatientId.eq(patient))
        .into_tuple()
        .all_in(tx)
        .await?;
    Ok(names.iter().filter_map(|n| Channel::parse(n)).collect())
}

/// Routes each reminder to its channel's adapter; a channel without one
/// answers [`NotifyError::NotConfigured`] (the reminder is skipped).
#[derive(Debug, Default)]
pub struct Channels<E, S> {
    /// E-mail.
    pub email: Option<E>,
    /// SMS.
    pub sms: Option<S>,
}

impl<E: Notifier, S: Notifier> Notifier for Channels<E, S> {
    async fn send(&self, message: &ReminderMessage) -> Result<(), NotifyError> {
        match message.channel {
            Channel::Email => match &self.email {
                Some(n) => n.send(message).await,
                None => Err(NotifyError::NotConfigured),
            },
            Channel::Sms => match &self.sms {
                Some(n) => n.send(message).await,
                None => Err(NotifyError::NotConfigured),
            },
        }
    }
}

/// Attempts before a reminder is given up as failed.
pub const MAX_ATTEMPTS: i32 = 8;
/// Reminders sent per organization and pass.
const BATCH: u64 = 50;

/// What one delivery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReminderReport {
    /// Accepted by the channel.
    pub sent: u64,
    /// Not sent, on purpose (opt-out, no address, appointment gone,
    /// channel not configured).
    pub skipped: u64,
    /// Failed this time (retried later, or given up after
    /// `MAX_ATTEMPTS`).
    pub failed: u64,
}

/// Sends due reminders through `N`.
#[derive(Debug)]
pub struct ReminderDeliverer<N> {
    db: Database,
    patients: SeaPatients,
    notifier: N,
}

enum Fate {
    Sent,
    Skipped(&'static str),
    Retry(String),
    GiveUp(String),
}

impl<N: Notifier> ReminderDeliverer<N> {
    /// A deliverer reading contacts through `patients`.
    pub fn new(db: Database, patients: SeaPatients, notifier: N) -> Self {
        Self {
            db,
            patients,
            notifier,
        }
    }

    /// One pass over every organization's due reminders at `now`.
    pub async fn run_once(&self, now: OffsetDateTime) -> Result<ReminderReport, StorageError> {
        let mut report = ReminderReport::default();
        for org in crate::organizations::every_org(&self.db).await? {
            let r = self.deliver_org(org, now).await.map_err(|e| match e {
                ClinicalError::Storage(s) => s,
                other => StorageError::Internal(other.to_string().into()),
            })?;
            report.sent += r.sent;
            report.skipped += r.skipped;
            report.failed += r.failed;
        }
        Ok(report)
    }

    async fn deliver_org(
        &self,
        org: OrgId,
        now: OffsetDateTime,
    ) -> Result<ReminderReport, ClinicalError> {
        let system =
            SubjectId::parse("system:reminders").unwrap_or_else(|_| unreachable!("static subject"));
        let ctx = TenantContext::new(org, system);
        let access = Access::system(ctx.clone());
        let tx = self.db.begin_tenant(&ctx).await?;
        let mut due = reminder::Entity::find()
            .in_org(org)
            .filter(reminder::Column::Status.eq("pending"))
            .filter(reminder::Column::NextAttemptAt.lte(now))
            .order_by_asc(reminder::Column::NextAttemptAt)
            .limit(BATCH);
        if self.db.backend() == Backend::Postgres {
            due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = due.all_in(&tx).await?;
        let mut report = ReminderReport::default();
        let mut events = Vec::new();
        for r in rows {
            let fate = self.attempt(&tx, &ctx, &r).await?;
            let id = AppointmentId::from_uuid(r.appointment_id);
            let attempts = r.attempts.saturating_add(1);
            let mut update = reminder::ActiveModel {
                org_id: Set(r.org_id),
                id: Set(r.id),
                attempts: Set(attempts),
                ..Default::default()
            };
            let detail = format!("reminder {} by {}", r.id, r.channel);
            match fate {
                Fate::Sent => {
                    update.status = Set("sent".to_owned());
                    update.sent_at = Set(Some(OffsetDateTime::now_utc()));
                    update.last_error = Set(None);
                    let field = if r.channel == "sms" { "phone" } else { "email" };
                    events.push(
                        event(
                            &access,
                            "appointment.reminder_sent",
                            Some(id),
                            Outcome::Allowed,
                        )
                        .with_phi_fields(&[field, "slot"])
                        .with_detail(detail),
                    );
                    report.sent += 1;
                }
                Fate::Skipped(why) => {
                    update.status = Set("skipped".to_owned());
                    update.last_error = Set(Some(why.to_owned()));
                    events.push(
                        event(
                            &access,
                            "appointment.reminder_sent",
                            Some(id),
                            Outcome::Denied,
                        )
                        .with_detail(format!("{detail}: {why}")),
                    );
                    report.skipped += 1;
                }
                Fate::Retry(why) if attempts < MAX_ATTEMPTS => {
                    let wait = crate::alerts::backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
                    update.next_attempt_at = Set(now + wait);
                    tracing::warn!(reminder = %r.id, error = %why, retry_in_secs = wait.as_secs(), "reminder delivery failed");
                    update.last_error = Set(Some(why));
                    report.failed += 1;
                }
                Fate::Retry(why) | Fate::GiveUp(why) => {
                    tracing::error!(reminder = %r.id, error = %why, "reminder given up");
                    update.status = Set("failed".to_owned());
                    update.last_error = Set(Some(why));
                    events.push(
                        event(
                            &access,
                            "appointment.reminder_sent",
                            Some(id),
                            Outcome::Error,
                        )
                        .with_detail(detail),
                    );
                    report.failed += 1;
                }
            }
            update.update(&tx).await.map_err(storage_error)?;
        }
        // Marks and their audit events commit together.
        crate::audit::commit_with(tx, &events).await?;
        Ok(report)
    }

    async fn attempt(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        r: &reminder::Model,
    ) -> Result<Fate, ClinicalError> {
        let Some(channel) = Channel::parse(&r.channel) else {
            return Ok(Fate::Skipped("unknown channel"));
        };
        let appointment = scoped(ctx)
            .filter(row::Column::Id.eq(r.appointment_id))
            .one_in(tx)
            .await?;
        let Some(a) = appointment else {
            return Ok(Fate::Skipped("appointment gone"));
        };
        if a.status != AppointmentStatus::Booked.as_str() {
            return Ok(Fate::Skipped("appointment no longer booked"));
        }
        if opted_out(tx, ctx, a.patient_id).await?.contains(&channel) {
            return Ok(Fate::Skipped("patient opted out"));
        }
        let patient = PatientId::from_uuid(a.patient_id);
        let Some((email, phone)) = self.patients.contact(tx, ctx, patient).await? else {
            return Ok(Fate::Skipped("patient gone"));
        };
        let to = match channel {
            Channel::Email => email,
            Channel::Sms => phone,
        };
        let Some(to) = to else {
            return Ok(Fate::Skipped("no address for the channel"));
        };
        let zone = TimeZoneName::parse(&a.time_zone).map_err(|_| integrity())?;
        let message = ReminderMessage {
            channel,
            to,
            text: reminder_text(a.starts_at, &zone),
            idempotency_key: format!("reminder-{}", r.id),
        };
        Ok(match self.notifier.send(&message).await {
            Ok(()) => Fate::Sent,
            Err(NotifyError::NotConfigured) => Fate::Skipped("channel not configured"),
            Err(NotifyError::Permanent(why)) => Fate::GiveUp(clip(why)),
            Err(e) => Fate::Retry(clip(e.to_string())),
        })
    }
}

fn clip(mut s: String) -> String {
    if s.len() > 500 {
        let mut end = 500;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
