//! Telephony storage over SeaORM: the organization's account (auth token
//! sealed), the calls placed for verification tasks, the status callbacks
//! processed (the replay guard) and the recordings (audio sealed). A status
//! callback's row, the call's state, the task's move and their audit
//! events commit together.

use std::sync::Arc;

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::appointment::ivr::CallingHours;
use carapace_clinical::telephony::voicemail::Message;
use carapace_clinical::telephony::{
    CallRecord, CallRepository, CallSlot, CallState, Delivery, ProviderSid, TelephonyAccount,
    after_call,
};
use carapace_clinical::verification::{SUPERVISOR_FIELD, TaskId, TaskStatus, check_transition};
use carapace_phi_crypto::Phi;
use carapace_tenancy::TenantContext;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use secrecy::ExposeSecret as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Backend, Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::{
    telephony_account as account, telephony_call as call, telephony_callback as callback,
    telephony_recording as recording, verification_task as task_row,
};
use crate::fields::{self, KeyVersions};
use crate::keys::KeyRing;
use crate::repo::{self, Sealer, audited};
use crate::scope::{Live as _, Scoped as _};
use crate::sealed::telephony_accounts::{AUTH_TOKEN, TABLE as ACCOUNTS};
use crate::sealed::telephony_recordings::{AUDIO, TABLE as RECORDINGS, TRANSCRIPT};

/// [`CallRepository`] over the `telephony_*` tables.
#[derive(Clone, Debug)]
pub struct SeaCalls {
    db: Database,
    keys: Arc<KeyRing>,
}

impl SeaCalls {
    /// Telephony rows in `db`, sealed with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }
}

fn call_in_progress() -> ClinicalError {
    ClinicalError::Conflict {
        code: "call_in_progress",
        detail: "the task already has a call that has not ended",
    }
}

fn integrity() -> ClinicalError {
    ClinicalError::Storage(fields::integrity())
}

fn task_event(access: &Access, action: &str, task: TaskId, outcome: Outcome) -> AuditEvent {
    repo::event(access, action, "verification_task", Some(task), outcome)
}

fn record_of(r: &call::Model) -> Result<CallRecord, ClinicalError> {
    Ok(CallRecord {
        sid: ProviderSid::parse(&r.call_sid).ok_or_else(integrity)?,
        task: TaskId::from_uuid(r.task_id),
        state: CallState::parse(&r.state).ok_or_else(integrity)?,
    })
}

/// A recording's stored facts (its audio stays sealed until played).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The provider's id.
    pub sid: ProviderSid,
    /// The call it was made on.
    pub call: ProviderSid,
    /// Its length.
    pub duration_secs: u32,
    /// When it was deleted at the provider (none: not yet).
    pub deleted_at_provider: Option<OffsetDateTime>,
    /// What was said, where it could be transcribed.
    pub transcript: Option<Phi<String>>,
    /// When it was stored.
    pub created_at: OffsetDateTime,
}

impl SeaCalls {
    async fn call_in(
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        sid: &ProviderSid,
    ) -> Result<Option<call::Model>, ClinicalError> {
        Ok(call::Entity::find()
            .live(ctx)
            .filter(call::Column::CallSid.eq(sid.as_str()))
            .one_in(tx)
            .await?)
    }

    /// The recordings of task `task` (`verification.recordings_list`).
    pub async fn recordings(
        &self,
        access: &Access,
        task: TaskId,
    ) -> Result<Vec<RecordingInfo>, ClinicalError> {
        let ctx = access.tenant();
        let rows =
            audited::<_, ClinicalError, _>(&self.db, ctx, async |tx: &DatabaseTransaction| {
                let rows = recording::Entity::find()
                    .live(ctx)
                    .filter(recording::Column::TaskId.eq(task.as_uuid()))
                    .order_by_asc(recording::Column::Id)
                    .all_in(tx)
                    .await?;
                let listed = task_event(
                    access,
                    "verification.recordings_list",
                    task,
                    Outcome::Allowed,
                )
                .with_phi_fields(&["recording_transcript"])
                .with_detail(format!("{} recordings", rows.len()));
                Ok((rows, vec![listed]))
            })
            .await?;
        let mut versions = KeyVersions::new(&self.keys, ctx);
        let mut infos = Vec::with_capacity(rows.len());
        for r in &rows {
            let transcript = match &r.transcript {
                Some(sealed) => {
                    let key = versions.get(r.key_version).await?;
                    Some(Phi::new(
                        Sealer::new(&key, r.org_id, RECORDINGS, r.id).open(TRANSCRIPT, sealed)?,
                    ))
                }
                None => None,
            };
            infos.push(RecordingInfo {
                sid: ProviderSid::parse(&r.recording_sid).ok_or_else(integrity)?,
                call: ProviderSid::parse(&r.call_sid).ok_or_else(integrity)?,
                duration_secs: u32::try_from(r.duration_seconds).map_err(|_| integrity())?,
                deleted_at_provider: r.deleted_at_provider,
                created_at: r.created_at,
                transcript,
            });
        }
        Ok(infos)
    }

    /// The audio of recording `sid` of task `task`, for staff to play
    /// (`verification.recording_play`, every play recorded).
    pub async fn play(
        &self,
        access: &Access,
        task: TaskId,
        sid: &ProviderSid,
    ) -> Result<Option<Phi<Vec<u8>>>, ClinicalError> {
        let ctx = access.tenant();
        let found =
            audited::<_, ClinicalError, _>(&self.db, ctx, async |tx: &DatabaseTransaction| {
                let row = recording::Entity::find()
                    .live(ctx)
                    .filter(recording::Column::TaskId.eq(task.as_uuid()))
                    .filter(recording::Column::RecordingSid.eq(sid.as_str()))
                    .one_in(tx)
                    .await?;
                let outcome = Outcome::found(row.is_some());
                let played = task_event(access, "verification.recording_play", task, outcome)
                    .with_detail(format!("recording {sid}"));
                let played = if row.is_some() {
                    played.with_phi_fields(&["recording"])
                } else {
                    played
                };
                Ok((row, vec![played]))
            })
            .await?;
        let Some(r) = found else { return Ok(None) };
        let key = KeyVersions::new(&self.keys, ctx).get(r.key_version).await?;
        let audio = Sealer::new(&key, r.org_id, RECORDINGS, r.id).open_bytes(AUDIO, &r.audio)?;
        Ok(Some(Phi::new(audio)))
    }
}

impl CallRepository for SeaCalls {
    async fn account(
        &self,
        ctx: &TenantContext,
    ) -> Result<Option<TelephonyAccount>, ClinicalError> {
        let select = account::Entity::find().live(ctx);
        let Some(r) = repo::read_one(&self.db, ctx, select).await? else {
            return Ok(None);
        };
        let key = KeyVersions::new(&self.keys, ctx).get(r.key_version).await?;
        let token =
            Sealer::new(&key, r.org_id, ACCOUNTS, r.org_id).open(AUTH_TOKEN, &r.auth_token)?;
        Ok(Some(TelephonyAccount {
            account_sid: ProviderSid::parse(&r.account_sid).ok_or_else(integrity)?,
            auth_token: token.into(),
            caller_number: r.caller_number,
            bot_stream_url: r.bot_stream_url,
            front_desk_number: r.front_desk_number,
            calling_hours: u8::try_from(r.call_from_hour)
                .ok()
                .zip(u8::try_from(r.call_until_hour).ok())
                .and_then(|(from, until)| CallingHours::new(from, until))
                .ok_or_else(integrity)?,
        }))
    }

    async fn set_account(
        &self,
        access: &Access,
        a: &TelephonyAccount,
    ) -> Result<(), ClinicalError> {
        let ctx = access.tenant();
        let org = ctx.org().as_uuid();
        let key = self.keys.current(ctx).await?;
        let token =
            Sealer::new(&key, org, ACCOUNTS, org).seal(AUTH_TOKEN, a.auth_token.expose_secret())?;
        let model = account::ActiveModel {
            org_id: Set(org),
            key_version: Set(i32::try_from(key.version()).map_err(|_| integrity())?),
            account_sid: Set(a.account_sid.as_str().to_owned()),
            auth_token: Set(token),
            caller_number: Set(a.caller_number.clone()),
            bot_stream_url: Set(a.bot_stream_url.clone()),
            updated_at: Set(OffsetDateTime::now_utc()),
            front_desk_number: Set(a.front_desk_number.clone()),
            call_from_hour: Set(i32::from(a.calling_hours.from)),
            call_until_hour: Set(i32::from(a.calling_hours.until)),
        };
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            account::Entity::insert(model)
                .on_conflict(
                    OnConflict::column(account::Column::OrgId)
                        .update_columns([
                            account::Column::KeyVersion,
                            account::Column::AccountSid,
                            account::Column::AuthToken,
                            account::Column::CallerNumber,
                            account::Column::BotStreamUrl,
                            account::Column::UpdatedAt,
                            account::Column::FrontDeskNumber,
                            account::Column::CallFromHour,
                            account::Column::CallUntilHour,
                        ])
                        .to_owned(),
                )
                .run(tx)
                .await?;
            let set = access
                .event(
                    "telephony.configure",
                    "telephony_account",
                    Some(org.to_string()),
                    Outcome::Allowed,
                )
                .with_detail(format!("account {}", a.account_sid));
            Ok(((), vec![set]))
        })
        .await
    }

    async fn active_call(
        &self,
        ctx: &TenantContext,
        task: TaskId,
    ) -> Result<Option<CallRecord>, ClinicalError> {
        let select = call::Entity::find()
            .live(ctx)
            .filter(call::Column::TaskId.eq(task.as_uuid()))
            .filter(call::Column::EndedAt.is_null());
        repo::read_one(&self.db, ctx, select)
            .await?
            .as_ref()
            .map(record_of)
            .transpose()
    }

    async fn reserve_call(
        &self,
        ctx: &TenantContext,
        task: TaskId,
    ) -> Result<CallSlot, ClinicalError> {
        let slot = CallSlot::new(Uuid::new_v4());
        let now = carapace_audit::event::now_micros();
        let abandoned = now - CallSlot::ABANDONED_AFTER;
        let model = call::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            call_sid: Set(slot.placeholder().as_str().to_owned()),
            task_id: Set(task.as_uuid()),
            state: Set(CallState::Queued.as_str().to_owned()),
            placed_by: Set(ctx.actor().as_str().to_owned()),
            escalated_at: Set(None),
            ended_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let tx = self.db.begin_tenant(ctx).await?;
        // A slot whose request was dropped between reserving and
        // recording holds the task only so long.
        call::Entity::delete_many()
            .scoped(ctx)
            .filter(call::Column::TaskId.eq(task.as_uuid()))
            .filter(call::Column::EndedAt.is_null())
            .filter(call::Column::CallSid.starts_with(CallSlot::PREFIX))
            .filter(call::Column::CreatedAt.lt(abandoned))
            .run(&tx)
            .await?;
        model.insert(&tx).await.map_err(|e| {
            let conflict = e
                .sql_err()
                .is_some_and(|s| matches!(s, sea_orm::SqlErr::UniqueConstraintViolation(_)));
            if conflict {
                call_in_progress()
            } else {
                ClinicalError::Storage(storage_error(e))
            }
        })?;
        repo::commit::<ClinicalError>(tx).await?;
        Ok(slot)
    }

    async fn record_call(
        &self,
        access: &Access,
        task: TaskId,
        slot: &CallSlot,
        sid: &ProviderSid,
    ) -> Result<(), ClinicalError> {
        let ctx = access.tenant();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let moved = call::Entity::update_many()
                .col_expr(call::Column::CallSid, sid.as_str().into())
                .col_expr(
                    call::Column::UpdatedAt,
                    carapace_audit::event::now_micros().into(),
                )
                .scoped(ctx)
                .filter(call::Column::CallSid.eq(slot.placeholder().as_str()))
                .filter(call::Column::TaskId.eq(task.as_uuid()))
                .run(tx)
                .await?;
            if moved.rows_affected != 1 {
                return Err(call_in_progress());
            }
            let placed = task_event(access, "verification.call", task, Outcome::Allowed)
                .with_phi_fields(&["payer_phone"])
                .with_detail(format!("call {sid}"));
            Ok(((), vec![placed]))
        })
        .await
    }

    async fn release_call(
        &self,
        ctx: &TenantContext,
        slot: &CallSlot,
    ) -> Result<(), ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        call::Entity::delete_many()
            .scoped(ctx)
            .filter(call::Column::CallSid.eq(slot.placeholder().as_str()))
            .run(&tx)
            .await?;
        repo::commit(tx).await
    }

    async fn record_escalation(
        &self,
        access: &Access,
        task: TaskId,
        sid: &ProviderSid,
    ) -> Result<(), ClinicalError> {
        let ctx = access.tenant();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let Some(found) = Self::call_in(tx, ctx, sid).await? else {
                return Err(ClinicalError::NotFound);
            };
            let mut update: call::ActiveModel = found.into();
            let now = carapace_audit::event::now_micros();
            update.escalated_at = Set(Some(now));
            update.updated_at = Set(now);
            update.update(tx).await.map_err(storage_error)?;
            let escalated = task_event(access, "verification.escalate", task, Outcome::Allowed)
                .with_phi_fields(&[SUPERVISOR_FIELD])
                .with_detail(format!("call {sid} transferred to the supervisor"));
            Ok(((), vec![escalated]))
        })
        .await
    }

    async fn apply_status(
        &self,
        access: &Access,
        sid: &ProviderSid,
        event: &str,
        state: CallState,
    ) -> Result<Delivery, ClinicalError> {
        let ctx = access.tenant();
        let postgres = self.db.backend() == Backend::Postgres;
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let Some(found) = Self::call_in(tx, ctx, sid).await? else {
                return Ok((Delivery::UnknownCall, Vec::new()));
            };
            let now = carapace_audit::event::now_micros();
            let first = callback::Entity::insert(callback::ActiveModel {
                org_id: Set(ctx.org().as_uuid()),
                call_sid: Set(sid.as_str().to_owned()),
                event: Set(event.to_owned()),
                received_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([
                    callback::Column::OrgId,
                    callback::Column::CallSid,
                    callback::Column::Event,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(tx)
            .await
            .map_err(storage_error)?;
            if first == 0 {
                return Ok((Delivery::Replay, Vec::new()));
            }
            let task = TaskId::from_uuid(found.task_id);
            let mut update: call::ActiveModel = found.into();
            update.state = Set(state.as_str().to_owned());
            update.updated_at = Set(now);
            if state.ended() {
                update.ended_at = Set(Some(now));
            }
            update.update(tx).await.map_err(storage_error)?;
            let mut q = task_row::Entity::find()
                .live(ctx)
                .filter(task_row::Column::Id.eq(task.as_uuid()));
            if postgres {
                q = q.lock_exclusive();
            }
            let row = q.one_in(tx).await?.ok_or_else(integrity)?;
            let from = TaskStatus::parse(&row.status).ok_or_else(integrity)?;
            let detail = match after_call(from, state) {
                Some((to, reason)) => {
                    check_transition(from, to)?;
                    let (org, id, version) = (row.org_id, row.id, row.key_version);
                    let mut moved: task_row::ActiveModel = row.into();
                    moved.status = Set(to.as_str().to_owned());
                    moved.updated_at = Set(now);
                    if let Some(reason) = reason {
                        let key = KeyVersions::new(&self.keys, ctx).get(version).await?;
                        moved.failure_reason = Set(Some(crate::verification::seal_failure_reason(
                            &key, org, id, reason,
                        )?));
                    }
                    moved.update(tx).await.map_err(storage_error)?;
                    format!("call {sid} {}: {from} -> {to}", state.as_str())
                }
                None => format!("call {sid} {}: task stays {from}", state.as_str()),
            };
            let followed = task_event(access, "verification.call_status", task, Outcome::Allowed)
                .with_detail(detail);
            Ok((Delivery::Processed, vec![followed]))
        })
        .await
    }

    async fn find_call(
        &self,
        ctx: &TenantContext,
        sid: &ProviderSid,
    ) -> Result<Option<CallRecord>, ClinicalError> {
        let select = call::Entity::find()
            .live(ctx)
            .filter(call::Column::CallSid.eq(sid.as_str()));
        repo::read_one(&self.db, ctx, select)
            .await?
            .as_ref()
            .map(record_of)
            .transpose()
    }

    async fn recording_stored(
        &self,
        ctx: &TenantContext,
        sid: &ProviderSid,
    ) -> Result<bool, ClinicalError> {
        let select = recording::Entity::find()
            .live(ctx)
            .filter(recording::Column::RecordingSid.eq(sid.as_str()));
        Ok(repo::read_one(&self.db, ctx, select).await?.is_some())
    }

    async fn store_recording(
        &self,
        access: &Access,
        c: &CallRecord,
        message: &Message,
    ) -> Result<Delivery, ClinicalError> {
        let ctx = access.tenant();
        let (sid, duration_secs) = (&message.recording, message.duration_secs);
        let (org, id) = (ctx.org().as_uuid(), Uuid::now_v7());
        let key = self.keys.current(ctx).await?;
        let sealer = Sealer::new(&key, org, RECORDINGS, id);
        let sealed = sealer.seal_bytes(AUDIO, message.audio.expose_phi())?;
        let transcript = message
            .transcript
            .as_ref()
            .map(|t| sealer.seal(TRANSCRIPT, t.expose_phi()))
            .transpose()?;
        let model = recording::ActiveModel {
            org_id: Set(org),
            id: Set(id),
            recording_sid: Set(sid.as_str().to_owned()),
            call_sid: Set(c.sid.as_str().to_owned()),
            task_id: Set(c.task.as_uuid()),
            key_version: Set(i32::try_from(key.version()).map_err(|_| integrity())?),
            audio: Set(sealed),
            transcript: Set(transcript),
            duration_seconds: Set(i32::try_from(duration_secs).map_err(|_| integrity())?),
            deleted_at_provider: Set(None),
            created_at: Set(carapace_audit::event::now_micros()),
        };
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let stored = recording::Entity::insert(model)
                .on_conflict(
                    OnConflict::columns([
                        recording::Column::OrgId,
                        recording::Column::RecordingSid,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(tx)
                .await
                .map_err(storage_error)?;
            if stored == 0 {
                return Ok((Delivery::Replay, Vec::new()));
            }
            let fields: &[&str] = if message.transcript.is_some() {
                &["recording", "recording_transcript"]
            } else {
                &["recording"]
            };
            let kept = task_event(access, "verification.recording", c.task, Outcome::Allowed)
                .with_phi_fields(fields)
                .with_detail(format!("call {} recording {sid}, {duration_secs} s", c.sid));
            Ok((Delivery::Processed, vec![kept]))
        })
        .await
    }

    async fn recording_deleted(
        &self,
        access: &Access,
        sid: &ProviderSid,
    ) -> Result<(), ClinicalError> {
        let ctx = access.tenant();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let Some(found) = recording::Entity::find()
                .live(ctx)
                .filter(recording::Column::RecordingSid.eq(sid.as_str()))
                .one_in(tx)
                .await?
            else {
                return Err(ClinicalError::NotFound);
            };
            let task = TaskId::from_uuid(found.task_id);
            let mut update: recording::ActiveModel = found.into();
            update.deleted_at_provider = Set(Some(carapace_audit::event::now_micros()));
            update.update(tx).await.map_err(storage_error)?;
            let deleted = task_event(
                access,
                "verification.recording_deleted",
                task,
                Outcome::Allowed,
            )
            .with_detail(format!("recording {sid} deleted at the provider"));
            Ok(((), vec![deleted]))
        })
        .await
    }
}
