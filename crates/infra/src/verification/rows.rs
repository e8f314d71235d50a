//! A verification task's row: its sealed columns opened into a [`Task`],
//! its events, and the repository's steps shared by its operations (find,
//! decrypt, move to a new status).

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::patient::PatientId;
use carapace_clinical::verification::{Task, TaskId, TaskRequest, TaskStatus, check_transition};
use carapace_phi_crypto::Phi;
use carapace_phi_crypto::envelope::DataKey;
use carapace_tenancy::{SubjectId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, QuerySelect as _,
};
use uuid::Uuid;

use super::SeaVerifications;
use crate::db::Fetch as _;
use crate::db::{Backend, storage_error};
use crate::entity::{verification_setting as setting, verification_task as row};
use crate::fields::{self, KeyVersions};
use crate::repo::{self, Sealer, on_row};
use crate::scope::Live as _;
use crate::sealed::verification_settings::{SUPERVISOR_PHONE, TABLE as SETTINGS};
use crate::sealed::verification_tasks::{
    FAILURE_REASON, PAYER_NAME, PAYER_PHONE, PLAN, PROCEDURE_CODES, REFERENCE_NUMBER,
    TABLE as TASKS,
};

pub(super) fn integrity() -> ClinicalError {
    ClinicalError::Storage(fields::integrity())
}

/// The sealed columns of task `id`.
pub(super) fn task_sealer(key: &DataKey, org: Uuid, id: Uuid) -> Sealer<'_> {
    Sealer::new(key, org, TASKS, id)
}

pub(super) fn from_row(key: &DataKey, r: &row::Model) -> Result<Task, ClinicalError> {
    let sealer = task_sealer(key, r.org_id, r.id);
    let open = |column: &str, sealed: &[u8]| sealer.open(column, sealed);
    let codes = open(PROCEDURE_CODES, &r.procedure_codes)?;
    Ok(Task {
        id: TaskId::from_uuid(r.id),
        request: TaskRequest {
            patient: PatientId::from_uuid(r.patient_id),
            payer_name: Phi::new(open(PAYER_NAME, &r.payer_name)?),
            payer_phone: Phi::new(open(PAYER_PHONE, &r.payer_phone)?),
            plan: Phi::new(open(PLAN, &r.plan)?),
            procedure_codes: Phi::new(codes.split(',').map(str::to_owned).collect()),
        },
        status: TaskStatus::parse(&r.status).ok_or_else(integrity)?,
        claimed_by: r
            .claimed_by
            .as_deref()
            .map(|s| SubjectId::parse(s).map_err(|_| integrity()))
            .transpose()?,
        reference_number: r
            .reference_number
            .as_deref()
            .map(|v| open(REFERENCE_NUMBER, v).map(Phi::new))
            .transpose()?,
        transcript_chunks: u32::try_from(r.transcript_chunks).map_err(|_| integrity())?,
        created_by: SubjectId::parse(&r.created_by).map_err(|_| integrity())?,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// Task `id`'s failure `reason`, sealed (a call that failed the task).
pub(crate) fn seal_failure_reason(
    key: &DataKey,
    org: Uuid,
    id: Uuid,
    reason: &str,
) -> Result<Vec<u8>, ClinicalError> {
    Ok(task_sealer(key, org, id).seal(FAILURE_REASON, reason)?)
}

pub(super) fn event(access: &Access, action: &str, id: Uuid, outcome: Outcome) -> AuditEvent {
    repo::event(access, action, "verification_task", Some(id), outcome)
}

/// Where the organization's supervisor number is sealed: its own row.
pub(super) fn supervisor_sealer(key: &DataKey, org: Uuid) -> Sealer<'_> {
    Sealer::new(key, org, SETTINGS, org)
}

pub(super) fn settings_event(access: &Access, action: &str) -> AuditEvent {
    let org = access.org().as_uuid().to_string();
    access.event(action, "verification_settings", Some(org), Outcome::Allowed)
}

impl SeaVerifications {
    /// The organization's supervisor number, read in `tx`.
    pub(super) async fn supervisor_in(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
    ) -> Result<Option<Phi<String>>, ClinicalError> {
        let org = ctx.org().as_uuid();
        let found = setting::Entity::find_by_id(org).one_in(tx).await?;
        let Some((version, sealed)) =
            found.and_then(|r| Some((r.key_version, r.supervisor_phone?)))
        else {
            return Ok(None);
        };
        let key = KeyVersions::new(&self.keys, ctx).get(version).await?;
        let phone = supervisor_sealer(&key, org).open(SUPERVISOR_PHONE, &sealed)?;
        Ok(Some(Phi::new(phone)))
    }

    pub(super) async fn decrypt(
        &self,
        ctx: &TenantContext,
        rows: &[row::Model],
    ) -> Result<Vec<Task>, ClinicalError> {
        KeyVersions::new(&self.keys, ctx)
            .open_each(rows, |r| r.key_version, from_row)
            .await
    }

    /// The task `id` in `tx`, locked for change on PostgreSQL; for a bot
    /// (`bot`), only if it claimed it.
    pub(super) async fn find(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        id: Uuid,
        bot: Option<&SubjectId>,
        lock: bool,
    ) -> Result<Option<row::Model>, ClinicalError> {
        let mut q = row::Entity::find().live(ctx).filter(row::Column::Id.eq(id));
        if let Some(bot) = bot {
            q = q.filter(row::Column::ClaimedBy.eq(bot.as_str()));
        }
        if lock && self.db.backend() == Backend::Postgres {
            q = q.lock_exclusive();
        }
        Ok(q.one_in(tx).await?)
    }

    /// Moves task `id` to `to` (checked), with `change` applied, recording
    /// `action`; `bot`: only the bot's own task.
    pub(super) async fn transition(
        &self,
        access: &Access,
        id: Uuid,
        bot: Option<&SubjectId>,
        to: TaskStatus,
        action: &str,
        change: impl FnOnce(&mut row::ActiveModel, &DataKey) -> Result<(), ClinicalError>,
    ) -> Result<Option<Task>, ClinicalError> {
        let ctx = access.tenant();
        let find = async |tx: &DatabaseTransaction| self.find(tx, ctx, id, bot, true).await;
        let missing = || event(access, action, id, Outcome::NotFound);
        let saved = on_row(&self.db, ctx, find, missing, async |tx, current| {
            // New sealed columns join the row under the key its others use.
            let version = u32::try_from(current.key_version).map_err(|_| integrity())?;
            let key = self.keys.version(ctx, version).await?;
            let from = TaskStatus::parse(&current.status).ok_or_else(integrity)?;
            check_transition(from, to)?;
            let mut update: row::ActiveModel = current.into();
            update.status = Set(to.as_str().to_owned());
            update.updated_at = Set(carapace_audit::event::now_micros());
            change(&mut update, &key)?;
            let saved = update.update(tx).await.map_err(storage_error)?;
            let done =
                event(access, action, id, Outcome::Allowed).with_detail(format!("{from} -> {to}"));
            Ok((saved, vec![done]))
        })
        .await?;
        match saved {
            Some(saved) => Ok(self.decrypt(ctx, &[saved]).await?.pop()),
            None => Ok(None),
        }
    }
}
