//! Appointment storage and reminder delivery over SeaORM.
//!
//! Every call runs in one tenant transaction and filters on `org_id`.
//! Bookings and moves write their reminders to `appointment_reminders` (the
//! outbox) in the same transaction; the database itself refuses two
//! overlapping booked appointments for one practitioner or one patient
//! (see migration m0014), which is what makes a concurrent double booking
//! impossible; the check before the write only gives the common case a
//! quick, clear answer. The visit reason is the one PHI column, sealed like
//! every other.
//!
//! [`ReminderDeliverer`] sends due reminders through a [`Notifier`]:
//! claimed with `FOR UPDATE SKIP LOCKED` (several servers share the
//! queue), sent with the reminder's id as idempotency key, marked sent (and
//! audited as `appointment.reminder_sent`) in the same transaction, retried
//! with backoff on temporary failures. A crash between send and commit
//! sends again: at least once, with the same key.

use std::sync::Arc;

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::appointment::ivr::{
    AnswerOutcome, ReminderAnswer, ReminderAnswers, reminder_call_text,
};
use carapace_clinical::appointment::{
    Appointment, AppointmentId, AppointmentPage, AppointmentQuery, AppointmentRepository,
    AppointmentScope, AppointmentStatus, Channel, NewAppointment, Notifier, NotifyError,
    PHI_FIELDS, PlannedReminder, ReminderMessage, Slot, TimeZoneName, check_transition,
    reminder_text, slot_taken,
};
use carapace_clinical::patient::PatientId;
use carapace_phi_crypto::Phi;
use carapace_tenancy::{OrgId, StorageError, SubjectId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, Condition, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::SeaPatients;
use crate::db::{Backend, Database, is_overlap, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::appointment as row;
use crate::entity::{appointment_reminder as reminder, reminder_opt_out as opt_out};
use crate::fields::{self, KeyVersions};
use crate::keys::KeyRing;
use crate::repo::{self, Sealer, on_patient, on_row};
use crate::scope::{Live as _, Scoped as _};

use crate::sealed::appointments::{REASON, TABLE};

/// [`AppointmentRepository`] over the `appointments` table.
#[derive(Clone, Debug)]
pub struct SeaAppointments {
    db: Database,
    keys: Arc<KeyRing>,
}

impl SeaAppointments {
    /// Appointments in `db`, reasons sealed with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }

    async fn decrypt_all(
        &self,
        ctx: &TenantContext,
        rows: Vec<row::Model>,
    ) -> Result<Vec<Appointment>, ClinicalError> {
        let mut keys = KeyVersions::new(&self.keys, ctx);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let reason = match &r.reason {
                Some(sealed) => {
                    let key = keys.get(r.key_version).await?;
                    let sealer = Sealer::new(&key, r.org_id, TABLE, r.id);
                    Some(Phi::new(sealer.open(REASON, sealed)?))
                }
                None => None,
            };
            out.push(from_row(r, reason)?);
        }
        Ok(out)
    }

    /// Locks and returns one appointment in `tx` (PostgreSQL: `FOR UPDATE`;
    /// SQLite's writer already excludes everyone).
    async fn locked(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        id: AppointmentId,
    ) -> Result<Option<row::Model>, ClinicalError> {
        let mut q = scoped(ctx).filter(row::Column::Id.eq(id.as_uuid()));
        if self.db.backend() == Backend::Postgres {
            q = q.lock_exclusive();
        }
        Ok(q.one_in(tx).await?)
    }
}

impl SeaAppointments {
    /// The practitioner's appointments starting in `window`, read in `tx`
    /// (the caller records the access).
    pub(crate) async fn starting_in(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        practitioner: &SubjectId,
        window: Slot,
    ) -> Result<Vec<Appointment>, ClinicalError> {
        let rows = scoped(ctx)
            .filter(row::Column::Practitioner.eq(practitioner.as_str()))
            .filter(row::Column::StartsAt.gte(window.start()))
            .filter(row::Column::StartsAt.lt(window.end()))
            .order_by_asc(row::Column::StartsAt)
            .limit(2000)
            .all_in(tx)
            .await?;
        self.decrypt_all(ctx, rows).await
    }
}

fn integrity() -> ClinicalError {
    ClinicalError::Storage(fields::integrity())
}

fn from_row(r: row::Model, reason: Option<Phi<String>>) -> Result<Appointment, ClinicalError> {
    Ok(Appointment {
        id: AppointmentId::from_uuid(r.id),
        org: OrgId::from_uuid(r.org_id),
        patient: PatientId::from_uuid(r.patient_id),
        practitioner: SubjectId::parse(&r.practitioner).map_err(|_| integrity())?,
        slot: Slot::new(r.starts_at, r.ends_at).ok_or_else(integrity)?,
        time_zone: TimeZoneName::parse(&r.time_zone).map_err(|_| integrity())?,
        status: AppointmentStatus::parse(&r.status).ok_or_else(integrity)?,
        reason,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

fn scoped(ctx: &TenantContext) -> sea_orm::Select<row::Entity> {
    row::Entity::find().live(ctx)
}

fn now() -> OffsetDateTime {
    carapace_audit::event::now_micros()
}

fn event(access: &Access, action: &str, id: Option<AppointmentId>, outcome: Outcome) -> AuditEvent {
    repo::event(
        access,
        action,
        "appointment",
        id.map(|i| i.as_uuid()),
        outcome,
    )
}

/// The allowed event of `action` on appointment `a`, naming its patient.
fn allowed(access: &Access, action: &str, a: AppointmentId, patient: Uuid) -> AuditEvent {
    event(access, action, Some(a), Outcome::Allowed)
        .with_phi_fields(&PHI_FIELDS)
        .with_detail(format!("patient {patient}"))
}

/// Whether a booked appointment other than `except` overlaps `slot` for
/// the practitioner or the patient.
async fn clashes(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    practitioner: &str,
    patient: Uuid,
    slot: &Slot,
    except: Option<Uuid>,
) -> Result<bool, ClinicalError> {
    let mut q = row::Entity::find()
        .scoped(ctx)
        .filter(row::Column::Status.eq(AppointmentStatus::Booked.as_str()))
        .filter(
            Condition::any()
                .add(row::Column::Practitioner.eq(practitioner))
                .add(row::Column::PatientId.eq(patient)),
        )
        .filter(row::Column::StartsAt.lt(slot.end()))
        .filter(row::Column::EndsAt.gt(slot.start()));
    if let Some(id) = except {
        q = q.filter(row::Column::Id.ne(id));
    }
    Ok(q.one_in(tx).await?.is_some())
}

/// The database's refusal of an overlap as the domain's conflict; so is a
/// deadlock on the appointment's insert or move, which only bookings
/// waiting on each other's overlapping rows can reach (seen under load:
/// twelve concurrent bookings of one slot, one of them answered 500).
fn write_error(e: sea_orm::DbErr) -> ClinicalError {
    if is_overlap(&e) || crate::db::is_deadlock(&e) {
        slot_taken()
    } else {
        storage_error(e).into()
    }
}

async fn schedule(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    appointment: Uuid,
    reminders: &[PlannedReminder],
) -> Result<(), ClinicalError> {
    let created = now();
    for r in reminders {
        reminder::Entity::insert(reminder::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            id: Set(Uuid::now_v7()),
            appointment_id: Set(appointment),
            channel: Set(r.channel.as_str().to_owned()),
            due_at: Set(r.due_at),
            status: Set("pending".to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(r.due_at),
            sent_at: Set(None),
            last_error: Set(None),
            created_at: Set(created),
            answer: Set(None),
            answered_at: Set(None),
        })
        .run(tx)
        .await?;
    }
    Ok(())
}

/// Drops the appointment's reminders that have not gone out.
async fn unschedule(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    appointment: Uuid,
) -> Result<(), ClinicalError> {
    reminder::Entity::delete_many()
        .scoped(ctx)
        .filter(reminder::Column::AppointmentId.eq(appointment))
        .filter(reminder::Column::Status.eq("pending"))
        .run(tx)
        .await?;
    Ok(())
}

impl AppointmentRepository for SeaAppointments {
    async fn patient_of(
        &self,
        ctx: &TenantContext,
        id: AppointmentId,
    ) -> Result<Option<PatientId>, ClinicalError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let found: Option<Uuid> = scoped(ctx)
            .select_only()
            .column(row::Column::PatientId)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .into_tuple()
            .one_in(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)?;
        Ok(found.map(PatientId::from_uuid))
    }

    async fn book(
        &self,
        access: &Access,
        new: &NewAppointment,
        reminders: &[PlannedReminder],
    ) -> Result<Appointment, ClinicalError> {
        let ctx = access.tenant();
        let key = self.keys.current(ctx).await?;
        let id = AppointmentId::generate();
        let org = ctx.org().as_uuid();
        let reason = new
            .reason
            .as_ref()
            .map(|r| Sealer::new(&key, org, TABLE, id.as_uuid()).seal(REASON, r.expose_phi()))
            .transpose()?;
        let at = now();
        let missing = || {
            repo::event(
                access,
                "appointment.create",
                "patient",
                Some(new.patient),
                Outcome::NotFound,
            )
        };
        let booked = on_patient(&self.db, ctx, new.patient, missing, async |tx| {
            let patient = new.patient.as_uuid();
            if clashes(tx, ctx, new.practitioner.as_str(), patient, &new.slot, None).await? {
                return Err(slot_taken());
            }
            row::Entity::insert(row::ActiveModel {
                org_id: Set(org),
                id: Set(id.as_uuid()),
                patient_id: Set(patient),
                practitioner: Set(new.practitioner.as_str().to_owned()),
                starts_at: Set(new.slot.start()),
                ends_at: Set(new.slot.end()),
                time_zone: Set(new.time_zone.as_str().to_owned()),
                status: Set(AppointmentStatus::Booked.as_str().to_owned()),
                key_version: Set(i32::try_from(key.version()).unwrap_or(i32::MAX)),
                reason: Set(reason),
                created_at: Set(at),
                updated_at: Set(at),
            })
            .exec_without_returning(tx)
            .await
            .map_err(write_error)?;
            schedule(tx, ctx, id.as_uuid(), reminders).await?;
            Ok(((), vec![allowed(access, "appointment.create", id, patient)]))
        })
        .await?;
        if booked.is_none() {
            return Err(ClinicalError::NotFound);
        }
        Ok(Appointment {
            id,
            org: ctx.org(),
            patient: new.patient,
            practitioner: new.practitioner.clone(),
            slot: new.slot,
            time_zone: new.time_zone.clone(),
            status: AppointmentStatus::Booked,
            reason: new.reason.clone(),
            created_at: at,
            updated_at: at,
        })
    }

    async fn get(
        &self,
        access: &Access,
        id: AppointmentId,
    ) -> Result<Option<Appointment>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let found = scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .one_in(&tx)
            .await?;
        let read = match &found {
            Some(r) => allowed(access, "appointment.read", id, r.patient_id),
            None => event(access, "appointment.read", Some(id), Outcome::NotFound),
        };
        crate::audit::commit_with(tx, &[read]).await?;
        match found {
            Some(r) => Ok(self.decrypt_all(ctx, vec![r]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn reschedule(
        &self,
        access: &Access,
        id: AppointmentId,
        slot: Slot,
        reminders: &[PlannedReminder],
    ) -> Result<Option<Appointment>, ClinicalError> {
        let ctx = access.tenant();
        let find = async |tx: &DatabaseTransaction| self.locked(tx, ctx, id).await;
        let missing = || {
            event(
                access,
                "appointment.reschedule",
                Some(id),
                Outcome::NotFound,
            )
        };
        let updated = on_row(&self.db, ctx, find, missing, async |tx, current| {
            let status = AppointmentStatus::parse(&current.status).ok_or_else(integrity)?;
            if !carapace_clinical::appointment::may_reschedule(status) {
                return Err(ClinicalError::Conflict {
                    code: "invalid_transition",
                    detail: "only a booked appointment can be rescheduled",
                });
            }
            let (patient, practitioner) = (current.patient_id, current.practitioner.clone());
            if clashes(tx, ctx, &practitioner, patient, &slot, Some(id.as_uuid())).await? {
                return Err(slot_taken());
            }
            let mut update: row::ActiveModel = current.into();
            update.starts_at = Set(slot.start());
            update.ends_at = Set(slot.end());
            update.updated_at = Set(now());
            let updated = update.update(tx).await.map_err(write_error)?;
            unschedule(tx, ctx, id.as_uuid()).await?;
            schedule(tx, ctx, id.as_uuid(), reminders).await?;
            let rescheduled = allowed(access, "appointment.reschedule", id, patient);
            Ok((updated, vec![rescheduled]))
        })
        .await?;
        match updated {
            Some(updated) => Ok(self.decrypt_all(ctx, vec![updated]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn finish(
        &self,
        access: &Access,
        id: AppointmentId,
        to: AppointmentStatus,
    ) -> Result<Option<Appointment>, ClinicalError> {
        let ctx = access.tenant();
        let action = to.action();
        let find = async |tx: &DatabaseTransaction| self.locked(tx, ctx, id).await;
        let missing = || event(access, action, Some(id), Outcome::NotFound);
        let updated = on_row(&self.db, ctx, find, missing, async |tx, current| {
            let status = AppointmentStatus::parse(&current.status).ok_or_else(integrity)?;
            let slot = Slot::new(current.starts_at, current.ends_at).ok_or_else(integrity)?;
            check_transition(status, to, &slot, OffsetDateTime::now_utc())?;
            let patient = current.patient_id;
            let mut update: row::ActiveModel = current.into();
            update.status = Set(to.as_str().to_owned());
            update.updated_at = Set(now());
            let updated = update.update(tx).await.map_err(write_error)?;
            unschedule(tx, ctx, id.as_uuid()).await?;
            let changed = event(access, action, Some(id), Outcome::Allowed)
                .with_detail(format!("patient {patient}"));
            Ok((updated, vec![changed]))
        })
        .await?;
        let Some(updated) = updated else {
            return Ok(None);
        };
        Ok(self.decrypt_all(ctx, vec![updated]).await?.pop())
    }

    async fn list(
        &self,
        access: &Access,
        q: &AppointmentQuery,
    ) -> Result<AppointmentPage, ClinicalError> {
        let ctx = access.tenant();
        let limit = usize::from(q.limit.get());
        let mut query = scoped(ctx);
        query = match &q.scope {
            AppointmentScope::Organization => query,
            AppointmentScope::Patient(p) => query.filter(row::Column::PatientId.eq(p.as_uuid())),
            AppointmentScope::Practitioner(s) => {
                query.filter(row::Column::Practitioner.eq(s.as_str()))
            }
        };
        if let Some(from) = q.from {
            query = query.filter(row::Column::StartsAt.gte(from));
        }
        if let Some(to) = q.to {
            query = query.filter(row::Column::StartsAt.lt(to));
        }
        if let Some(status) = q.status {
            query = query.filter(row::Column::Status.eq(status.as_str()));
        }
        if let Some((start, id)) = q.after {
            query = query.filter(
                Condition::any().add(row::Column::StartsAt.gt(start)).add(
                    Condition::all()
                        .add(row::Column::StartsAt.eq(start))
                        .add(row::Column::Id.gt(id.as_uuid())),
                ),
            );
        }
        let tx = self.db.begin_tenant(ctx).await?;
        let rows = query
            .order_by_asc(row::Column::StartsAt)
            .order_by_asc(row::Column::Id)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .all_in(&tx)
            .await?;
        let mut shown: Vec<AuditEvent> = rows
            .iter()
            .take(limit)
            .map(|r| {
                allowed(
                    access,
                    "appointment.list",
                    AppointmentId::from_uuid(r.id),
                    r.patient_id,
                )
            })
            .collect();
        if shown.is_empty() {
            shown.push(event(access, "appointment.list", None, Outcome::NotFound));
        }
        crate::audit::commit_with(tx, &shown).await?;
        let mut items = self.decrypt_all(ctx, rows).await?;
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| (a.slot.start(), a.id))
        } else {
            None
        };
        Ok(AppointmentPage { items, next_after })
    }

    async fn busy(
        &self,
        access: &Access,
        practitioner: &SubjectId,
        window: Slot,
    ) -> Result<Vec<Slot>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let rows: Vec<(OffsetDateTime, OffsetDateTime)> = scoped(ctx)
            .select_only()
            .column(row::Column::StartsAt)
            .column(row::Column::EndsAt)
            .filter(row::Column::Practitioner.eq(practitioner.as_str()))
            .filter(row::Column::Status.eq(AppointmentStatus::Booked.as_str()))
            .filter(row::Column::StartsAt.lt(window.end()))
            .filter(row::Column::EndsAt.gt(window.start()))
            .order_by_asc(row::Column::StartsAt)
            .into_tuple()
            .all_in(&tx)
            .await?;
        // Times only, no patient: not a disclosure of PHI, but recorded.
        let read = access
            .event(
                "appointment.availability",
                "practitioner",
                Some(practitioner.as_str().to_owned()),
                Outcome::Allowed,
            )
            .with_detail(format!("{} busy slots", rows.len()));
        crate::audit::commit_with(tx, &[read]).await?;
        rows.into_iter()
            .map(|(s, e)| Slot::new(s, e).ok_or_else(integrity))
            .collect()
    }

    async fn set_opt_outs(
        &self,
        access: &Access,
        patient: PatientId,
        choices: &[(Channel, bool)],
    ) -> Result<bool, ClinicalError> {
        let ctx = access.tenant();
        let missing = || preferences_event(access, "update", patient, Outcome::NotFound);
        let listed: Vec<&str> = choices.iter().map(|(c, _)| c.as_str()).collect();
        let off: Vec<Channel> = choices
            .iter()
            .filter(|(_, on)| !on)
            .map(|(c, _)| *c)
            .collect();
        let changed = on_patient(&self.db, ctx, patient, missing, async |tx| {
            let org = ctx.org().as_uuid();
            opt_out::Entity::delete_many()
                .in_org(org)
                .filter(opt_out::Column::PatientId.eq(patient.as_uuid()))
                .filter(opt_out::Column::Channel.is_in(listed.clone()))
                .run(tx)
                .await?;
            for channel in Channel::ALL.into_iter().filter(|c| off.contains(c)) {
                opt_out::Entity::insert(opt_out::ActiveModel {
                    org_id: Set(org),
                    patient_id: Set(patient.as_uuid()),
                    channel: Set(channel.as_str().to_owned()),
                    created_at: Set(now()),
                })
                .run(tx)
                .await?;
            }
            let names: Vec<&str> = off.iter().map(|c| c.as_str()).collect();
            let changed = preferences_event(access, "update", patient, Outcome::Allowed)
                .with_detail(format!("opted out of: [{}]", names.join(", ")));
            Ok(((), vec![changed]))
        })
        .await?;
        Ok(changed.is_some())
    }

    async fn opt_outs(
        &self,
        access: &Access,
        patient: PatientId,
    ) -> Result<Option<Vec<Channel>>, ClinicalError> {
        let ctx = access.tenant();
        let missing = || preferences_event(access, "read", patient, Outcome::NotFound);
        on_patient(&self.db, ctx, patient, missing, async |tx| {
            let channels = opted_out(tx, ctx, patient.as_uuid()).await?;
            let read = preferences_event(access, "read", patient, Outcome::Allowed);
            Ok((channels, vec![read]))
        })
        .await
    }
}

mod reminders;
pub use reminders::{Channels, ReminderDeliverer, ReminderReport};
use reminders::{opted_out, preferences_event};
