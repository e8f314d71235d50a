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
pub struct Channels<E, S, V> {
    /// E-mail.
    pub email: Option<E>,
    /// SMS.
    pub sms: Option<S>,
    /// Calls.
    pub voice: Option<V>,
}

async fn through<N: Notifier>(n: Option<&N>, message: &ReminderMessage) -> Result<(), NotifyError> {
    match n {
        Some(n) => n.send(message).await,
        None => Err(NotifyError::NotConfigured),
    }
}

impl<E: Notifier, S: Notifier, V: Notifier> Notifier for Channels<E, S, V> {
    async fn send(&self, message: &ReminderMessage) -> Result<(), NotifyError> {
        match message.channel {
            Channel::Email => through(self.email.as_ref(), message).await,
            Channel::Sms => through(self.sms.as_ref(), message).await,
            Channel::Voice => through(self.voice.as_ref(), message).await,
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
    Later(OffsetDateTime),
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
                Fate::Later(at) => {
                    // Outside calling hours: not an attempt.
                    update.attempts = Set(r.attempts);
                    update.next_attempt_at = Set(at);
                }
                Fate::Sent => {
                    update.status = Set("sent".to_owned());
                    update.sent_at = Set(Some(OffsetDateTime::now_utc()));
                    update.last_error = Set(None);
                    let field = if r.channel == "email" {
                        "email"
                    } else {
                        "phone"
                    };
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
            Channel::Sms | Channel::Voice => phone,
        };
        let Some(to) = to else {
            return Ok(Fate::Skipped("no address for the channel"));
        };
        let zone = TimeZoneName::parse(&a.time_zone).map_err(|_| integrity())?;
        let text = match channel {
            Channel::Voice => reminder_call_text(a.starts_at, &zone),
            Channel::Email | Channel::Sms => reminder_text(a.starts_at, &zone),
        };
        let message = ReminderMessage {
            channel,
            to,
            text,
            idempotency_key: format!("reminder-{}", r.id),
            reminder: r.id,
            org: ctx.org(),
            starts_at: a.starts_at,
            zone,
        };
        Ok(match self.notifier.send(&message).await {
            Ok(()) => Fate::Sent,
            Err(NotifyError::NotConfigured) => Fate::Skipped("channel not configured"),
            Err(NotifyError::NotBefore(at)) => Fate::Later(at),
            Err(NotifyError::TooLate) => {
                Fate::Skipped("no calling hours left before the appointment")
            }
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

impl ReminderAnswers for SeaAppointments {
    async fn answer(
        &self,
        access: &Access,
        reminder_id: Uuid,
        answer: ReminderAnswer,
    ) -> Result<AnswerOutcome, ClinicalError> {
        let ctx = access.tenant();
        let postgres = self.db.backend() == Backend::Postgres;
        crate::repo::audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let mut q = reminder::Entity::find()
                .in_org(ctx.org())
                .filter(reminder::Column::Id.eq(reminder_id))
                .filter(reminder::Column::Channel.eq(Channel::Voice.as_str()))
                .filter(reminder::Column::Status.eq("sent"));
            if postgres {
                q = q.lock_exclusive();
            }
            let Some(r) = q.one_in(tx).await? else {
                return Ok((AnswerOutcome::Unknown, Vec::new()));
            };
            if r.answered_at.is_some() {
                return Ok((AnswerOutcome::Replay, Vec::new()));
            }
            let id = AppointmentId::from_uuid(r.appointment_id);
            let Some(a) = self.locked(tx, ctx, id).await? else {
                return Ok((AnswerOutcome::Unknown, Vec::new()));
            };
            // The patient, on the phone the reminder rang.
            let by_phone = SubjectId::parse(&format!("phone:patient-{}", a.patient_id))
                .map_err(|_| integrity())?;
            let patient = Access::new(
                TenantContext::new(ctx.org(), by_phone),
                carapace_audit::ActorKind::User,
                access.origin().clone(),
            );
            let mut marked: reminder::ActiveModel = r.clone().into();
            marked.answer = Set(Some(answer.as_str().to_owned()));
            marked.answered_at = Set(Some(OffsetDateTime::now_utc()));
            marked.update(tx).await.map_err(storage_error)?;
            let detail = format!("by phone, reminder {}", r.id);
            let done = match answer {
                ReminderAnswer::Confirm => {
                    event(&patient, "appointment.confirm", Some(id), Outcome::Allowed)
                        .with_detail(detail)
                }
                ReminderAnswer::Clinic => event(
                    &patient,
                    "appointment.reminder_answer",
                    Some(id),
                    Outcome::Allowed,
                )
                .with_detail(format!("{detail}: asked for the clinic")),
                ReminderAnswer::Cancel => {
                    let status = AppointmentStatus::parse(&a.status).ok_or_else(integrity)?;
                    let slot = Slot::new(a.starts_at, a.ends_at).ok_or_else(integrity)?;
                    let to = AppointmentStatus::Cancelled;
                    if check_transition(status, to, &slot, OffsetDateTime::now_utc()).is_ok() {
                        let mut update: row::ActiveModel = a.into();
                        update.status = Set(to.as_str().to_owned());
                        update.updated_at = Set(now());
                        update.update(tx).await.map_err(write_error)?;
                        unschedule(tx, ctx, id.as_uuid()).await?;
                        event(&patient, "appointment.cancel", Some(id), Outcome::Allowed)
                            .with_detail(detail)
                    } else {
                        event(&patient, "appointment.cancel", Some(id), Outcome::Denied)
                            .with_detail(format!("{detail}: no longer booked"))
                    }
                }
            };
            Ok((AnswerOutcome::Recorded, vec![done]))
        })
        .await
    }
}
