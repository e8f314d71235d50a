//! The clean-up job: deletes sessions (with their refresh tokens) that are
//! revoked or past their idle or absolute limit, reset codes that are used
//! or expired, spent MFA challenges past their expiry, idempotency records
//! past their 24 hours, FHIR bulk exports past their time (with their
//! sealed files), delivered alerts and anchored witness checkpoints after
//! 30 days, and per-address failure counts nobody added to for a day. It walks every organization, each in its own tenant
//! transaction, so row-level security applies to it like to any request.

use carapace_auth::local::ADDRESS_MEMORY;
use carapace_auth::local::SessionLimits;
use carapace_tenancy::{OrgId, StorageError, SubjectId, TenantContext};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait as _, EntityTrait, QueryFilter, QuerySelect,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::Run as _;
use crate::db::{Database, statement, storage_error};
use crate::entity::{
    alert_outbox, bulk_export, idempotency_key, login_address_failure, mfa_challenge_spent,
    organization, password_reset, session,
};
use crate::scope::Scoped as _;

/// What one run removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Sessions deleted (their refresh tokens go with them).
    pub sessions: u64,
    /// Reset codes deleted.
    pub resets: u64,
    /// Bulk exports deleted (their files go with them).
    pub exports: u64,
    /// Delivered alerts and anchored witness checkpoints taken off their
    /// queues.
    pub queued: u64,
}

/// How long a delivered alert or an anchored checkpoint stays in its queue
/// (for operators looking at recent deliveries) before the clean-up job
/// removes it. The witness keeps the checkpoints; the trail, the alerts'
/// events.
pub const QUEUE_MEMORY: time::Duration = time::Duration::days(30);

/// Deletes what has expired as of `now`.
pub async fn purge_expired(
    db: &Database,
    now: OffsetDateTime,
    limits: SessionLimits,
) -> Result<PurgeReport, StorageError> {
    let orgs: Vec<Uuid> = organization::Entity::find()
        .select_only()
        .column(organization::Column::Id)
        .into_tuple()
        .all(db.conn())
        .await
        .map_err(storage_error)?;
    let actor =
        SubjectId::parse("system:purge").map_err(|e| StorageError::Internal(Box::new(e)))?;
    let mut report = PurgeReport::default();
    for org in orgs {
        let ctx = TenantContext::new(OrgId::from_uuid(org), actor.clone());
        let tx = db.begin_tenant(&ctx).await?;
        let dead = Condition::any()
            .add(session::Column::RevokedAt.is_not_null())
            .add(session::Column::CreatedAt.lte(now - limits.absolute))
            .add(session::Column::LastUsedAt.lte(now - limits.idle));
        report.sessions += session::Entity::delete_many()
            .in_org(org)
            .filter(dead)
            .run(&tx)
            .await?
            .rows_affected;
        let spent = Condition::any()
            .add(password_reset::Column::UsedAt.is_not_null())
            .add(password_reset::Column::ExpiresAt.lte(now));
        report.resets += password_reset::Entity::delete_many()
            .in_org(org)
            .filter(spent)
            .run(&tx)
            .await?
            .rows_affected;
        mfa_challenge_spent::Entity::delete_many()
            .in_org(org)
            .filter(mfa_challenge_spent::Column::ExpiresAt.lte(now))
            .run(&tx)
            .await?;
        idempotency_key::Entity::delete_many()
            .in_org(org)
            .filter(idempotency_key::Column::ExpiresAt.lte(now))
            .run(&tx)
            .await?;
        report.exports += bulk_export::Entity::delete_many()
            .in_org(org)
            .filter(bulk_export::Column::ExpiresAt.lte(now))
            .run(&tx)
            .await?
            .rows_affected;
        let done_before = now - QUEUE_MEMORY;
        report.queued += alert_outbox::Entity::delete_many()
            .in_org(org)
            .filter(alert_outbox::Column::DeliveredAt.lte(done_before))
            .run(&tx)
            .await?
            .rows_affected;
        report.queued += tx
            .execute_raw(statement(
                db.conn().get_database_backend(),
                "DELETE FROM audit_witness_queue WHERE org_id = $1 AND anchored_at <= $2",
                vec![org.into(), done_before.into()],
            ))
            .await
            .map_err(storage_error)?
            .rows_affected();
        tx.commit().await.map_err(storage_error)?;
    }
    login_address_failure::Entity::delete_many()
        .filter(login_address_failure::Column::LastFailureAt.lte(now - ADDRESS_MEMORY))
        .exec(db.conn())
        .await
        .map_err(storage_error)?;
    Ok(report)
}
