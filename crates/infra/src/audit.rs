//! The audit trail over SeaORM: events appended inside the transaction of
//! the access they record ([`append`]), security events in their own
//! ([`SeaAuditLog`]), the chaining job that links events into each
//! organization's hash chain, signs checkpoints and raises the alerts the
//! events call for ([`AuditChainer`]), and verification ([`verify_org`]).
//!
//! Appending takes no lock: events are chained afterwards by one chainer at
//! a time per organization (an advisory lock on PostgreSQL), which assigns
//! gapless positions. Request throughput is therefore not serialized on
//! the chain.

use std::time::Duration;

use carapace_audit::chain::{
    ChainEntry, ChainHead, ChainVerifier, Checkpoint, CheckpointKind, Finding, Hash, StoredColumns,
    Verified,
};
use carapace_audit::{Access, AuditEvent, AuditFuture, Outcome, SecurityEvent, SecurityEventSink};
use carapace_tenancy::{OrgId, StorageError, TenantContext};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DbBackend, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Statement, Value,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Database, storage_error};
use crate::entity::{audit_chain, audit_checkpoint, audit_event};
use crate::scope::Scoped as _;

/// Largest page of events returned by a query.
pub const MAX_PAGE: u64 = 500;
/// Events chained per pass and organization.
const CHAIN_BATCH: u64 = 2000;
/// SQLite: how far before the chain head's event an unchained event is
/// still looked for (a transaction commits well within this). PostgreSQL
/// uses the transaction horizon instead (migration m0011).
const LATE_COMMIT_WINDOW: Duration = Duration::from_secs(600);

fn row(e: &AuditEvent) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        org_id: Set(e.org.as_uuid()),
        id: Set(e.id),
        recorded_at: Set(e.at),
        actor: Set(e.actor.as_str().to_owned()),
        action: Set(e.action.clone()),
        resource_type: Set(e.resource_type.clone()),
        resource_id: Set(e.resource_id.clone()),
        outcome: Set(e.outcome.as_str().to_owned()),
        body: Set(String::from_utf8_lossy(&e.canonical()).into_owned()),
    }
}

/// Appends `events` in `tx` and commits both: no event, no data.
pub(crate) async fn commit_with(
    tx: sea_orm::DatabaseTransaction,
    events: &[AuditEvent],
) -> Result<(), StorageError> {
    append(&tx, events).await?;
    tx.commit().await.map_err(storage_error)
}

/// Appends `events` on `conn`: call it inside the transaction of the access
/// they record, so both commit or neither does. The alerts they raise are
/// queued when they are chained ([`AuditChainer`]), off the request path:
/// a request costs the same whether its events raise an alert or not.
pub async fn append<C: ConnectionTrait>(
    conn: &C,
    events: &[AuditEvent],
) -> Result<(), StorageError> {
    if events.is_empty() {
        return Ok(());
    }
    for chunk in events.chunks(500) {
        audit_event::Entity::insert_many(chunk.iter().map(row))
            .exec_without_returning(conn)
            .await
            .map_err(|e| StorageError::Unavailable(Box::new(AuditWriteFailed(e))))?;
    }
    crate::idempotency::mark_committed(conn, events).await
}

/// [`append`] in `tx`, as group commit takes it.
pub(crate) fn append_in<'a>(
    tx: &'a sea_orm::DatabaseTransaction,
    events: &'a [AuditEvent],
) -> crate::db::UnitFuture<'a, ()> {
    Box::pin(append(tx, events))
}

/// Why an event could not be appended (for the log). Whatever the cause,
/// the access it records is refused as an outage: no event, no data.
#[derive(Debug, thiserror::Error)]
#[error("audit write failed")]
struct AuditWriteFailed(#[source] sea_orm::DbErr);

mod log;
pub use log::{AuditPage, AuditQuery, DayCount, SeaAuditLog};

mod chainer;
pub use chainer::AuditChainer;
use chainer::insert_checkpoint;

mod verify;
pub use verify::{OrgVerification, chain_resumes, unchained_in, verify_org};
use verify::{entries, link_before, tombstone};

mod export;
pub use export::{export_org, export_org_to};

mod retention;
pub use retention::{Purged, purge_org};

use crate::db::statement;
use crate::trail::{hash_of, system};

pub use crate::organizations::every_org;
