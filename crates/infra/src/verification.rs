//! Verification tasks and their transcripts over SeaORM. Every task field
//! with PHI is sealed; transcripts are sealed chunk by chunk. A bot's calls
//! find only the tasks it claimed; every call records its event in the
//! same transaction, as whoever made it (staff user or service account).

use std::sync::Arc;

use carapace_audit::{Access, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::patient::PatientId;
use carapace_clinical::verification::{
    BOT_VIEW_FIELDS, BotView, EscalationTarget, Progress, SUPERVISOR_FIELD, Task, TaskId,
    TaskRequest, TaskStatus, VerificationRepository, bot_view, limits, may_escalate,
};
use carapace_phi_crypto::Phi;
use carapace_phi_crypto::envelope::DataKey;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use uuid::Uuid;

use crate::SeaPatients;
use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::{
    verification_setting as setting, verification_task as row, verification_transcript as chunk,
};
use crate::fields::KeyVersions;
use crate::keys::KeyRing;
use crate::repo::{self, Sealer, on_patient, on_row};
use crate::scope::{Live as _, Scoped as _};

use crate::sealed::verification_settings::SUPERVISOR_PHONE;
use crate::sealed::verification_tasks::{
    FAILURE_REASON, PAYER_NAME, PAYER_PHONE, PLAN, PROCEDURE_CODES, REFERENCE_NUMBER,
};
use crate::sealed::verification_transcripts::{
    TABLE as TRANSCRIPTS, chunk_binding as chunk_column,
};
mod rows;

pub(crate) use rows::seal_failure_reason;
use rows::{event, from_row, integrity, settings_event, supervisor_sealer, task_sealer};

/// Most tasks one listing returns.
const LIST_MAX: u64 = 200;

/// [`VerificationRepository`] over `verification_tasks` and
/// `verification_transcripts`.
#[derive(Clone, Debug)]
pub struct SeaVerifications {
    db: Database,
    keys: Arc<KeyRing>,
    patients: SeaPatients,
}

impl SeaVerifications {
    /// Tasks in `db`, sealed with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self {
            patients: SeaPatients::new(db.clone(), keys.clone()),
            db,
            keys,
        }
    }
}

impl VerificationRepository for SeaVerifications {
    async fn create(
        &self,
        access: &Access,
        t: &TaskRequest,
    ) -> Result<Option<Task>, ClinicalError> {
        let ctx = access.tenant();
        let key = self.keys.current(ctx).await?;
        let (org, id) = (ctx.org().as_uuid(), Uuid::now_v7());
        let now = carapace_audit::event::now_micros();
        let seal = |column: &str, plain: &str| task_sealer(&key, org, id).seal(column, plain);
        let model = row::Model {
            org_id: org,
            id,
            patient_id: t.patient.as_uuid(),
            key_version: i32::try_from(key.version()).unwrap_or(i32::MAX),
            payer_name: seal(PAYER_NAME, t.payer_name.expose_phi())?,
            payer_phone: seal(PAYER_PHONE, t.payer_phone.expose_phi())?,
            plan: seal(PLAN, t.plan.expose_phi())?,
            procedure_codes: seal(PROCEDURE_CODES, &t.procedure_codes.expose_phi().join(","))?,
            status: TaskStatus::Pending.as_str().to_owned(),
            claimed_by: None,
            reference_number: None,
            failure_reason: None,
            transcript_chunks: 0,
            created_by: ctx.actor().as_str().to_owned(),
            created_at: now,
            updated_at: now,
        };
        let missing = || {
            repo::event(
                access,
                "verification.create",
                "patient",
                Some(t.patient),
                Outcome::NotFound,
            )
        };
        let made = on_patient(&self.db, ctx, t.patient, missing, async |tx| {
            let active: row::ActiveModel = model.clone().into();
            row::Entity::insert(active).run(tx).await?;
            let made = event(access, "verification.create", id, Outcome::Allowed)
                .with_phi_fields(&["payer_name", "payer_phone", "plan", "procedure_codes"])
                .with_detail(format!("patient {}", t.patient));
            Ok(((), vec![made]))
        })
        .await?;
        made.map(|()| from_row(&key, &model)).transpose()
    }

    async fn get(&self, access: &Access, id: TaskId) -> Result<Option<Task>, ClinicalError> {
        let id = id.as_uuid();
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let found = self.find(&tx, ctx, id, None, false).await?;
        let outcome = Outcome::found(found.is_some());
        crate::audit::commit_with(tx, &[event(access, "verification.read", id, outcome)]).await?;
        match found {
            Some(r) => Ok(self.decrypt(ctx, &[r]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn list(
        &self,
        access: &Access,
        status: Option<TaskStatus>,
    ) -> Result<Vec<Task>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let mut q = row::Entity::find().live(ctx);
        if let Some(s) = status {
            q = q.filter(row::Column::Status.eq(s.as_str()));
        }
        let rows = q
            .order_by_desc(row::Column::Id)
            .limit(LIST_MAX)
            .all_in(&tx)
            .await?;
        let listed = access
            .event(
                "verification.list",
                "verification_task",
                None,
                Outcome::Allowed,
            )
            .with_detail(format!("{} tasks", rows.len()));
        crate::audit::commit_with(tx, &[listed]).await?;
        self.decrypt(ctx, &rows).await
    }

    async fn cancel(&self, access: &Access, id: TaskId) -> Result<Option<Task>, ClinicalError> {
        let id = id.as_uuid();
        self.transition(
            access,
            id,
            None,
            TaskStatus::Cancelled,
            "verification.cancel",
            |_, _| Ok(()),
        )
        .await
    }

    async fn claim(&self, access: &Access, id: TaskId) -> Result<Option<Task>, ClinicalError> {
        let id = id.as_uuid();
        let bot = access.tenant().actor().clone();
        self.transition(
            access,
            id,
            None,
            TaskStatus::Claimed,
            "verification.claim",
            move |m, _| {
                m.claimed_by = Set(Some(bot.as_str().to_owned()));
                Ok(())
            },
        )
        .await
    }

    async fn bot_view(
        &self,
        access: &Access,
        id: TaskId,
    ) -> Result<Option<BotView>, ClinicalError> {
        let id = id.as_uuid();
        let ctx = access.tenant();
        let bot = ctx.actor().clone();
        let tx = self.db.begin_tenant(ctx).await?;
        // The task the bot claimed, and its patient (gone if deleted since).
        let found = match self.find(&tx, ctx, id, Some(&bot), false).await? {
            Some(r) => self
                .patients
                .read_in(&tx, ctx, PatientId::from_uuid(r.patient_id))
                .await?
                .map(|patient| (r, patient)),
            None => None,
        };
        let Some((r, patient)) = found else {
            let missing = event(access, "verification.bot_view", id, Outcome::NotFound);
            crate::audit::commit_with(tx, &[missing]).await?;
            return Ok(None);
        };
        // The supervisor's number is read only while the bot may escalate.
        let escalating = TaskStatus::parse(&r.status).is_some_and(may_escalate);
        let supervisor = if escalating {
            self.supervisor_in(&tx, ctx).await?
        } else {
            None
        };
        let mut disclosed = BOT_VIEW_FIELDS.to_vec();
        if supervisor.is_some() {
            disclosed.push(SUPERVISOR_FIELD);
        }
        let read = event(access, "verification.bot_view", id, Outcome::Allowed)
            .with_phi_fields(&disclosed)
            .with_detail(format!("patient {}", patient.id));
        crate::audit::commit_with(tx, &[read]).await?;
        let task = self.decrypt(ctx, &[r]).await?.pop().ok_or_else(integrity)?;
        Ok(Some(bot_view(&task, &patient, supervisor.as_ref())))
    }

    async fn report(
        &self,
        access: &Access,
        id: TaskId,
        progress: &Progress,
    ) -> Result<Option<Task>, ClinicalError> {
        let id = id.as_uuid();
        let bot = access.tenant().actor().clone();
        let org = access.org().as_uuid();
        let progress = progress.clone();
        self.transition(
            access,
            id,
            Some(&bot),
            progress.status(),
            "verification.progress",
            move |m, key| {
                match &progress {
                    Progress::Calling => {}
                    Progress::Completed(reference) => {
                        m.reference_number = Set(Some(
                            task_sealer(key, org, id)
                                .seal(REFERENCE_NUMBER, reference.expose_phi())?,
                        ));
                    }
                    Progress::Failed(reason) => {
                        m.failure_reason = Set(Some(
                            task_sealer(key, org, id).seal(FAILURE_REASON, reason.expose_phi())?,
                        ));
                    }
                }
                Ok(())
            },
        )
        .await
    }

    async fn append_transcript(
        &self,
        access: &Access,
        id: TaskId,
        seq: u32,
        text: &Phi<String>,
    ) -> Result<Option<u32>, ClinicalError> {
        let id = id.as_uuid();
        let ctx = access.tenant();
        let bot = ctx.actor().clone();
        let key = self.keys.current(ctx).await?;
        let find = async |tx: &DatabaseTransaction| self.find(tx, ctx, id, Some(&bot), true).await;
        let missing = || event(access, "verification.transcript", id, Outcome::NotFound);
        on_row(&self.db, ctx, find, missing, async |tx, task| {
            if task.status != TaskStatus::Calling.as_str() {
                return Err(ClinicalError::Conflict {
                    code: "invalid_transition",
                    detail: "transcripts are uploaded while the task is calling",
                });
            }
            let have = u32::try_from(task.transcript_chunks).map_err(|_| integrity())?;
            if seq != have {
                return Err(ClinicalError::Conflict {
                    code: "chunk_out_of_order",
                    detail: "send transcript chunks in order, each once, starting at 0",
                });
            }
            if have >= limits::CHUNKS_MAX {
                return Err(ClinicalError::Conflict {
                    code: "transcript_full",
                    detail: "a transcript holds at most 16 chunks of 16 KiB",
                });
            }
            let org = ctx.org().as_uuid();
            let column = chunk_column(seq);
            let sealed =
                Sealer::new(&key, org, TRANSCRIPTS, id).seal(&column, text.expose_phi())?;
            chunk::Entity::insert(chunk::ActiveModel {
                org_id: Set(org),
                task_id: Set(id),
                seq: Set(i32::try_from(seq).map_err(|_| integrity())?),
                key_version: Set(i32::try_from(key.version()).unwrap_or(i32::MAX)),
                chunk: Set(sealed),
                created_at: Set(carapace_audit::event::now_micros()),
            })
            .run(tx)
            .await?;
            let mut update: row::ActiveModel = task.into();
            update.transcript_chunks = Set(i32::try_from(seq + 1).map_err(|_| integrity())?);
            update.updated_at = Set(carapace_audit::event::now_micros());
            update.update(tx).await.map_err(storage_error)?;
            let stored = event(access, "verification.transcript", id, Outcome::Allowed)
                .with_phi_fields(&["transcript"])
                .with_detail(format!("chunk {seq}, {} bytes", text.expose_phi().len()));
            Ok((seq + 1, vec![stored]))
        })
        .await
    }

    async fn supervisor_phone(
        &self,
        access: &Access,
    ) -> Result<Option<Phi<String>>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let phone = self.supervisor_in(&tx, ctx).await?;
        let mut read = settings_event(access, "verification.settings_read");
        if phone.is_some() {
            read = read.with_phi_fields(&[SUPERVISOR_FIELD]);
        }
        crate::audit::commit_with(tx, &[read]).await?;
        Ok(phone)
    }

    async fn set_supervisor_phone(
        &self,
        access: &Access,
        phone: Option<&Phi<String>>,
    ) -> Result<(), ClinicalError> {
        use sea_orm::sea_query::OnConflict;
        let ctx = access.tenant();
        let org = ctx.org().as_uuid();
        let key = self.keys.current(ctx).await?;
        let sealed = phone
            .map(|p| supervisor_sealer(&key, org).seal(SUPERVISOR_PHONE, p.expose_phi()))
            .transpose()?;
        let tx = self.db.begin_tenant(ctx).await?;
        let model = setting::ActiveModel {
            org_id: Set(org),
            key_version: Set(i32::try_from(key.version()).map_err(|_| integrity())?),
            supervisor_phone: Set(sealed),
            updated_at: Set(time::OffsetDateTime::now_utc()),
        };
        setting::Entity::insert(model)
            .on_conflict(
                OnConflict::column(setting::Column::OrgId)
                    .update_columns([
                        setting::Column::KeyVersion,
                        setting::Column::SupervisorPhone,
                        setting::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .run(&tx)
            .await?;
        let change = settings_event(access, "verification.settings_update").with_detail(
            if phone.is_some() {
                "supervisor_phone set"
            } else {
                "supervisor_phone removed"
            },
        );
        crate::audit::commit_with(tx, &[change]).await?;
        Ok(())
    }

    async fn transcript(
        &self,
        access: &Access,
        id: TaskId,
    ) -> Result<Option<Phi<String>>, ClinicalError> {
        let id = id.as_uuid();
        let ctx = access.tenant();
        let find = async |tx: &DatabaseTransaction| self.find(tx, ctx, id, None, false).await;
        let missing = || {
            event(
                access,
                "verification.transcript_read",
                id,
                Outcome::NotFound,
            )
        };
        let rows = on_row(&self.db, ctx, find, missing, async |tx, _| {
            let rows = chunk::Entity::find()
                .scoped(ctx)
                .filter(chunk::Column::TaskId.eq(id))
                .order_by_asc(chunk::Column::Seq)
                .all_in(tx)
                .await?;
            let read = event(access, "verification.transcript_read", id, Outcome::Allowed)
                .with_phi_fields(&["transcript"]);
            Ok((rows, vec![read]))
        })
        .await?;
        let Some(rows) = rows else {
            return Ok(None);
        };
        let open = |key: &DataKey, c: chunk::Model| -> Result<String, ClinicalError> {
            let seq = u32::try_from(c.seq).map_err(|_| integrity())?;
            let column = chunk_column(seq);
            Ok(Sealer::new(key, c.org_id, TRANSCRIPTS, id).open(&column, &c.chunk)?)
        };
        let chunks = KeyVersions::new(&self.keys, ctx)
            .open_each(rows, |c| c.key_version, open)
            .await?;
        Ok(Some(Phi::new(chunks.concat())))
    }

    async fn escalation_target(
        &self,
        access: &Access,
        id: TaskId,
    ) -> Result<Option<EscalationTarget>, ClinicalError> {
        let ctx = access.tenant();
        let bot = ctx.actor().clone();
        let tx = self.db.begin_tenant_read(ctx).await?;
        let Some(r) = self.find(&tx, ctx, id.as_uuid(), Some(&bot), false).await? else {
            repo::commit::<ClinicalError>(tx).await?;
            return Ok(None);
        };
        let status = TaskStatus::parse(&r.status).ok_or_else(integrity)?;
        let supervisor = if may_escalate(status) {
            self.supervisor_in(&tx, ctx).await?
        } else {
            None
        };
        repo::commit::<ClinicalError>(tx).await?;
        Ok(Some((status, supervisor)))
    }
}
