//! The repositories' toolkit: what every repository does the same way,
//! written once.
//!
//! - Sealing a PHI column: [`Sealer`] (one `seal`, one `open`).
//! - The audit event of an access: [`event`]; a read that records none:
//!   [`read_one`].
//! - A tenant transaction that commits with its audit events
//!   ([`audited`]), and the same on one row, which records the miss when
//!   there is no such row ([`on_row`], [`on_patient`]).
//! - A unit of audited work that may share its commit ([`grouped`]).
//! - The organization filter ([`crate::scope`]).

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::patient::PatientId;
use carapace_tenancy::{OrgId, StorageError, TenantContext};
use sea_orm::{ColumnTrait as _, DatabaseTransaction, EntityTrait as _, QueryFilter as _};

use crate::db::Fetch as _;
use crate::db::{Audited, Database, UnitFuture, storage_error};
use crate::entity::patient;
use crate::scope::Live as _;

pub(crate) use crate::fields::Sealer;

/// The audit event of `action` on the `kind` resource `id` (none: the
/// action was on no single resource).
pub(crate) fn event(
    access: &Access,
    action: &str,
    kind: &str,
    id: Option<impl ToString>,
    outcome: Outcome,
) -> AuditEvent {
    access.event(action, kind, id.map(|i| i.to_string()), outcome)
}

/// Commits `tx` (work that records no event).
pub(crate) async fn commit<E: From<StorageError>>(tx: DatabaseTransaction) -> Result<(), E> {
    tx.commit().await.map_err(|e| storage_error(e).into())
}

/// The one row `select` finds, read in a read-only tenant transaction of
/// `ctx` (a read that records no event).
pub(crate) async fn read_one<E: sea_orm::EntityTrait>(
    db: &Database,
    ctx: &TenantContext,
    select: sea_orm::Select<E>,
) -> Result<Option<E::Model>, StorageError> {
    let tx = db.begin_tenant_read(ctx).await?;
    let row = select.one_in(&tx).await?;
    tx.commit().await.map_err(storage_error)?;
    Ok(row)
}

/// Runs `work` in one tenant transaction of `ctx` and commits it together
/// with the audit events `work` returns: no event, no data.
pub(crate) async fn audited<T, E, F>(db: &Database, ctx: &TenantContext, work: F) -> Result<T, E>
where
    E: From<StorageError>,
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<Audited<T>, E>,
{
    let tx = db.begin_tenant(ctx).await?;
    let (value, events) = work(&tx).await?;
    crate::audit::commit_with(tx, &events).await?;
    Ok(value)
}

/// Like [`audited`], on the row `find` looks up in the transaction: when
/// there is none, only the event `missing` makes is committed and the
/// answer is `None`; otherwise `work` runs on the row in the same
/// transaction.
pub(crate) async fn on_row<R, T, L, F>(
    db: &Database,
    ctx: &TenantContext,
    find: L,
    missing: impl FnOnce() -> AuditEvent,
    work: F,
) -> Result<Option<T>, ClinicalError>
where
    L: AsyncFnOnce(&DatabaseTransaction) -> Result<Option<R>, ClinicalError>,
    F: AsyncFnOnce(&DatabaseTransaction, R) -> Result<Audited<T>, ClinicalError>,
{
    audited(db, ctx, async |tx: &DatabaseTransaction| {
        let Some(row) = find(tx).await? else {
            return Ok((None, vec![missing()]));
        };
        let (value, events) = work(tx, row).await?;
        Ok((Some(value), events))
    })
    .await
}

/// [`on_row`] on patient `patient`'s record (its row is not needed).
pub(crate) async fn on_patient<T, F>(
    db: &Database,
    ctx: &TenantContext,
    patient: PatientId,
    missing: impl FnOnce() -> AuditEvent,
    work: F,
) -> Result<Option<T>, ClinicalError>
where
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<Audited<T>, ClinicalError>,
{
    let find = async |tx: &DatabaseTransaction| patient_row(tx, ctx, patient).await;
    on_row(db, ctx, find, missing, async |tx, _| work(tx).await).await
}

/// Patient `id`'s row in `ctx`'s (live) organization, read in `tx`.
pub(crate) async fn patient_row(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    id: PatientId,
) -> Result<Option<patient::Model>, ClinicalError> {
    patient::Entity::find()
        .live(ctx)
        .filter(patient::Column::Id.eq(id.as_uuid()))
        .one(tx)
        .await
        .map_err(|e| storage_error(e).into())
}

/// Runs `unit` for `org`, possibly sharing its commit with other units
/// ([`Database::grouped`]), its events appended by the audit log.
pub(crate) async fn grouped<T, F>(db: &Database, org: OrgId, unit: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: for<'a> Fn(&'a DatabaseTransaction) -> UnitFuture<'a, Audited<T>> + Send + Sync + 'static,
{
    db.grouped(org, crate::audit::append_in, unit).await
}
