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

/// Which events to read.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only this resource id.
    pub resource_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// From this time (inclusive).
    pub from: Option<OffsetDateTime>,
    /// Before this time.
    pub to: Option<OffsetDateTime>,
    /// After this event (the previous page's last).
    pub after: Option<Uuid>,
    /// Page size (capped at [`MAX_PAGE`]).
    pub limit: u64,
}

/// A page of events, oldest first.
#[derive(Clone, Debug)]
pub struct AuditPage {
    /// The events.
    pub items: Vec<AuditEvent>,
    /// The last event's id when there may be more.
    pub next_after: Option<Uuid>,
}

/// The persisted audit log.
#[derive(Clone, Debug)]
pub struct SeaAuditLog {
    db: Database,
}

impl SeaAuditLog {
    /// The log in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records one event in its own transaction.
    pub async fn record(&self, event: &AuditEvent) -> Result<(), StorageError> {
        let ctx = TenantContext::new(event.org, event.actor.clone());
        let tx = self.db.begin_tenant(&ctx).await?;
        append(&tx, std::slice::from_ref(event)).await?;
        tx.commit().await.map_err(storage_error)
    }

    /// Reads events of `access`'s organization; the read is itself
    /// recorded (`audit.read`), in the same transaction.
    pub async fn query(
        &self,
        access: &Access,
        query: &AuditQuery,
        read_event: AuditEvent,
    ) -> Result<AuditPage, StorageError> {
        let tx = self.db.begin_tenant(access.tenant()).await?;
        let mut select = audit_event::Entity::find().in_org(access.org());
        if let Some(a) = &query.actor {
            select = select.filter(audit_event::Column::Actor.eq(a.as_str()));
        }
        if let Some(t) = &query.resource_type {
            select = select.filter(audit_event::Column::ResourceType.eq(t.as_str()));
        }
        if let Some(r) = &query.resource_id {
            select = select.filter(audit_event::Column::ResourceId.eq(r.as_str()));
        }
        if let Some(a) = &query.action {
            select = select.filter(audit_event::Column::Action.eq(a.as_str()));
        }
        if let Some(o) = query.outcome {
            select = select.filter(audit_event::Column::Outcome.eq(o.as_str()));
        }
        if let Some(from) = query.from {
            select = select.filter(audit_event::Column::RecordedAt.gte(from));
        }
        if let Some(to) = query.to {
            select = select.filter(audit_event::Column::RecordedAt.lt(to));
        }
        if let Some(after) = query.after {
            // Ids are UUIDv7: time-ordered, so the id alone is the cursor.
            select = select.filter(audit_event::Column::Id.gt(after));
        }
        let limit = query.limit.clamp(1, MAX_PAGE);
        let rows = select
            .order_by_asc(audit_event::Column::Id)
            .limit(limit + 1)
            .all(&tx)
            .await
            .map_err(storage_error)?;
        append(&tx, std::slice::from_ref(&read_event)).await?;
        tx.commit().await.map_err(storage_error)?;
        let more = u64::try_from(rows.len()).unwrap_or(u64::MAX) > limit;
        let items: Vec<AuditEvent> = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|r| {
                AuditEvent::from_canonical(r.body.as_bytes())
                    .ok_or_else(|| StorageError::Internal("unreadable audit event".into()))
            })
            .collect::<Result<_, _>>()?;
        let next_after = more.then(|| items.last().map(|e| e.id)).flatten();
        Ok(AuditPage { items, next_after })
    }
}

impl SecurityEventSink for SeaAuditLog {
    fn emit(&self, event: SecurityEvent) -> AuditFuture<'_> {
        Box::pin(async move {
            tracing::warn!(
                security_event = event.kind.as_str(),
                org = %event.org,
                subject = %event.subject,
                detail = %event.detail,
                "security event"
            );
            self.record(&event.to_audit_event())
                .await
                .map_err(carapace_audit::AuditError)
        })
    }
}

use crate::db::statement;
use crate::trail::{hash_of, system};

/// Links new events into their organization's chain and signs checkpoints;
/// with a witness ([`Self::with_witness`]) it also queues each checkpoint
/// and writes the waiting ones to the witness after every pass.
pub struct AuditChainer {
    db: Database,
    key: SigningKey,
    checkpoint_every: Duration,
    witness: Option<crate::witness::Anchoring>,
}

impl std::fmt::Debug for AuditChainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditChainer").finish_non_exhaustive()
    }
}

impl AuditChainer {
    /// A chainer signing with `key`, writing a checkpoint at most every
    /// `checkpoint_every` per organization (zero: after every pass that
    /// added events).
    pub fn new(db: Database, key: SigningKey, checkpoint_every: Duration) -> Self {
        Self {
            db,
            key,
            checkpoint_every,
            witness: None,
        }
    }

    /// Anchors every checkpoint in `witness` too: queued when signed,
    /// written after each pass (an unreachable witness is retried at most
    /// every checkpoint interval, and at least every 10 s).
    pub fn with_witness(
        mut self,
        witness: std::sync::Arc<dyn carapace_audit::witness::Witness>,
    ) -> Self {
        let longest = self.checkpoint_every.min(Duration::from_secs(10));
        self.witness = Some(crate::witness::Anchoring::new(witness, longest));
        self
    }

    /// One pass over every organization, then (with a witness) one
    /// anchoring pass; returns how many events it chained.
    pub async fn run_once(&self) -> Result<u64, StorageError> {
        let mut total = 0;
        for org in every_org(&self.db).await? {
            total += self.chain_org(org).await?;
        }
        if let Some(anchoring) = &self.witness {
            anchoring.pass(&self.db, &self.key.verifying_key()).await;
        }
        Ok(total)
    }

    /// Chains every pending event of every organization, waiting for each
    /// organization's chain lock instead of skipping an organization that
    /// another chainer holds, and going on until nothing visible is left
    /// (the last pass of a stopping server), then (with a witness) anchors
    /// what waits; returns how many were chained. Checkpoints the witness
    /// cannot take now wait in the queue for the next server.
    pub async fn run_to_completion(&self) -> Result<u64, StorageError> {
        let mut total = 0;
        for org in every_org(&self.db).await? {
            total += self.chain_org_to_completion(org).await?;
        }
        if let Some(anchoring) = &self.witness {
            anchoring.pass(&self.db, &self.key.verifying_key()).await;
        }
        Ok(total)
    }

    /// Chains every pending event of `org` that is visible now, waiting for
    /// its chain lock (before an export, or at a stop); returns how many.
    pub async fn chain_org_to_completion(&self, org: OrgId) -> Result<u64, StorageError> {
        let mut total = 0;
        loop {
            let added = self.chain_org_as(org, true).await?;
            total += added;
            if added < CHAIN_BATCH {
                return Ok(total);
            }
        }
    }

    /// Chains `org`'s pending events; returns how many (none when another
    /// chainer holds the organization's chain at this moment).
    pub async fn chain_org(&self, org: OrgId) -> Result<u64, StorageError> {
        self.chain_org_as(org, false).await
    }

    async fn chain_org_as(&self, org: OrgId, wait: bool) -> Result<u64, StorageError> {
        let backend = self.db.conn().get_database_backend();
        let tx = self
            .db
            .begin_tenant(&system(org, "system:audit-chain"))
            .await?;
        if backend == DbBackend::Postgres {
            // One chainer per organization at a time, across all servers.
            let sql = if wait {
                "SELECT true AS got FROM (SELECT pg_advisory_xact_lock(1633906017, hashtext($1::text))) AS l"
            } else {
                "SELECT pg_try_advisory_xact_lock(1633906017, hashtext($1::text)) AS got"
            };
            let got = tx
                .query_one_raw(statement(
                    backend,
                    sql,
                    vec![org.as_uuid().to_string().into()],
                ))
                .await
                .map_err(storage_error)?
                .and_then(|r| r.try_get::<bool>("", "got").ok())
                .unwrap_or(false);
            if !got {
                return Ok(0);
            }
        }
        let last = audit_chain::Entity::find()
            .in_org(org)
            .order_by_desc(audit_chain::Column::Position)
            .one(&tx)
            .await
            .map_err(storage_error)?;
        let (mut head, since) = match &last {
            Some(l) => {
                let at = audit_event::Entity::find()
                    .in_org(org)
                    .filter(audit_event::Column::Id.eq(l.event_id))
                    .one(&tx)
                    .await
                    .map_err(storage_error)?
                    .map(|e| e.recorded_at);
                (
                    ChainHead {
                        position: u64::try_from(l.position).unwrap_or(0),
                        link: hash_of(&l.link)?,
                    },
                    at.map(|t| t - LATE_COMMIT_WINDOW),
                )
            }
            // Empty: a new chain, or one whose whole prefix retention removed.
            None => match tombstone(&tx, org).await? {
                Some(t) => (
                    ChainHead {
                        position: u64::try_from(t.position).unwrap_or(0),
                        link: hash_of(&t.link)?,
                    },
                    Some(t.signed_at - LATE_COMMIT_WINDOW),
                ),
                None => (ChainHead::genesis(org), None),
            },
        };
        let since = since.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let pending = match backend {
            DbBackend::Postgres => {
                // Taken before looking: every transaction older than this
                // has finished, so its events are visible to the query below.
                let now_horizon = single_text(
                    &tx,
                    statement(
                        backend,
                        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS v",
                        vec![],
                    ),
                )
                .await?
                .ok_or_else(|| StorageError::Internal("no snapshot horizon".into()))?;
                let last_horizon = single_text(
                    &tx,
                    statement(
                        backend,
                        "SELECT horizon::text AS v FROM audit_chain_horizons WHERE org_id = $1",
                        vec![org.as_uuid().into()],
                    ),
                )
                .await?
                .unwrap_or_else(|| "0".to_owned());
                let pending = unchained(&tx, org, "e.tx >= $2::xid8", last_horizon.into()).await?;
                if u64::try_from(pending.len()).unwrap_or(u64::MAX) < CHAIN_BATCH {
                    // Everything up to the horizon is about to be chained.
                    tx.execute_raw(statement(
                        backend,
                        "INSERT INTO audit_chain_horizons (org_id, horizon) VALUES ($1, $2::xid8)
                         ON CONFLICT (org_id) DO UPDATE SET horizon = EXCLUDED.horizon",
                        vec![org.as_uuid().into(), now_horizon.into()],
                    ))
                    .await
                    .map_err(storage_error)?;
                }
                pending
            }
            _ => unchained(&tx, org, "e.recorded_at >= $2", since.into()).await?,
        };
        let mut rows = Vec::with_capacity(pending.len());
        for p in &pending {
            let id: Uuid = p.try_get("", "id").map_err(storage_error)?;
            let body: String = p.try_get("", "body").map_err(storage_error)?;
            // Alerts are raised here, exactly once per event (chaining is),
            // in the chaining transaction: durable, and off the request path.
            if body.contains("\"action\":\"security.") {
                let event = AuditEvent::from_canonical(body.as_bytes())
                    .ok_or_else(|| StorageError::Internal("unreadable audit event".into()))?;
                if let Some(rule) = crate::alerts::enqueue_for(&tx, &event).await? {
                    tracing::warn!(alert = rule.as_str(), org = %org, event = %id, "alert raised");
                }
            }
            let (position, leaf, link) = head.append(body.as_bytes());
            rows.push(audit_chain::ActiveModel {
                org_id: Set(org.as_uuid()),
                position: Set(i64::try_from(position).unwrap_or(i64::MAX)),
                event_id: Set(id),
                leaf: Set(leaf.to_vec()),
                link: Set(link.to_vec()),
            });
        }
        let added = u64::try_from(rows.len()).unwrap_or(u64::MAX);
        for chunk in rows.chunks(500) {
            audit_chain::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&tx)
                .await
                .map_err(storage_error)?;
        }
        if head.position == 0 {
            return Ok(0);
        }
        let last_checkpoint = audit_checkpoint::Entity::find()
            .in_org(org)
            .filter(audit_checkpoint::Column::Kind.eq(CheckpointKind::Head.as_str()))
            .order_by_desc(audit_checkpoint::Column::Position)
            .one(&tx)
            .await
            .map_err(storage_error)?;
        let now = OffsetDateTime::now_utc();
        // A checkpoint when the head moved past the last one and it is due.
        let due = match &last_checkpoint {
            None => true,
            Some(c) => {
                u64::try_from(c.position).unwrap_or(0) < head.position
                    && now - c.signed_at >= self.checkpoint_every
            }
        };
        if due {
            insert_checkpoint(
                &tx,
                &Checkpoint::sign(
                    &self.key,
                    org,
                    CheckpointKind::Head,
                    head.position,
                    head.link,
                    now,
                ),
            )
            .await?;
        }
        if self.witness.is_some() {
            crate::witness::queue(&tx, org, now).await?;
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(added)
    }
}

/// Up to [`CHAIN_BATCH`] of `org`'s events not yet in its chain, oldest
/// first, among those `since` (a condition on `$2`) selects.
async fn unchained<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    since: &str,
    bound: Value,
) -> Result<Vec<sea_orm::QueryResult>, StorageError> {
    let sql = format!(
        "SELECT e.id AS id, e.body AS body FROM audit_events e
         WHERE e.org_id = $1 AND {since}
           AND NOT EXISTS (SELECT 1 FROM audit_chain c
                           WHERE c.org_id = e.org_id AND c.event_id = e.id)
         ORDER BY e.recorded_at, e.id LIMIT $3"
    );
    conn.query_all_raw(statement(
        conn.get_database_backend(),
        &sql,
        vec![
            org.as_uuid().into(),
            bound,
            i64::try_from(CHAIN_BATCH).unwrap_or(i64::MAX).into(),
        ],
    ))
    .await
    .map_err(storage_error)
}

/// The text column `v` of the one row `stmt` returns, if any.
async fn single_text<C: ConnectionTrait>(
    conn: &C,
    stmt: Statement,
) -> Result<Option<String>, StorageError> {
    match conn.query_one_raw(stmt).await.map_err(storage_error)? {
        Some(row) => row
            .try_get::<String>("", "v")
            .map(Some)
            .map_err(storage_error),
        None => Ok(None),
    }
}

async fn insert_checkpoint<C: ConnectionTrait>(
    conn: &C,
    cp: &Checkpoint,
) -> Result<(), StorageError> {
    audit_checkpoint::Entity::insert(audit_checkpoint::ActiveModel {
        org_id: Set(cp.org.as_uuid()),
        kind: Set(cp.kind.as_str().to_owned()),
        position: Set(i64::try_from(cp.position).unwrap_or(i64::MAX)),
        link: Set(cp.link.to_vec()),
        signed_at: Set(cp.signed_at),
        signature: Set(cp.signature.to_vec()),
    })
    .exec_without_returning(conn)
    .await
    .map_err(storage_error)?;
    Ok(())
}

pub use crate::organizations::every_org;

/// The result of verifying one organization's trail.
#[derive(Debug)]
pub struct OrgVerification {
    /// The chain verified, or the first bad position.
    pub chain: Result<Verified, Finding>,
    /// Events recorded but not chained yet.
    pub pending: u64,
}

/// Verifies `org`'s chain against its signed checkpoints (read-only).
pub async fn verify_org(
    db: &Database,
    org: OrgId,
    key: &VerifyingKey,
) -> Result<OrgVerification, StorageError> {
    let backend = db.conn().get_database_backend();
    let tx = db.begin_tenant(&system(org, "system:audit-verify")).await?;
    let mut checkpoints = Vec::new();
    let mut tombstone: Option<Checkpoint> = None;
    for c in audit_checkpoint::Entity::find()
        .in_org(org)
        .all(&tx)
        .await
        .map_err(storage_error)?
    {
        let cp = Checkpoint {
            org: OrgId::from_uuid(c.org_id),
            kind: CheckpointKind::parse(&c.kind)
                .ok_or_else(|| StorageError::Internal("unknown checkpoint kind".into()))?,
            position: u64::try_from(c.position).unwrap_or(0),
            link: hash_of(&c.link)?,
            signed_at: c.signed_at,
            signature: c
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| StorageError::Internal("malformed signature".into()))?,
        };
        match cp.kind {
            CheckpointKind::Tombstone
                if tombstone.as_ref().is_none_or(|t| t.position < cp.position) =>
            {
                tombstone = Some(cp);
            }
            CheckpointKind::Tombstone => {}
            CheckpointKind::Head => checkpoints.push(cp),
        }
    }
    let mut verifier = match ChainVerifier::new(org, tombstone.as_ref(), checkpoints, key) {
        Ok(v) => v,
        Err(finding) => {
            return Ok(OrgVerification {
                chain: Err(finding),
                pending: 0,
            });
        }
    };
    let mut after = tombstone.as_ref().map_or(0, |t| t.position);
    loop {
        let page = entries(&tx, org, after, u64::MAX, 1000).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        for entry in &page {
            if let Err(finding) = verifier.push(entry) {
                return Ok(OrgVerification {
                    chain: Err(finding),
                    pending: 0,
                });
            }
        }
        after = last;
    }
    let pending = tx
        .query_one_raw(statement(
            backend,
            "SELECT COUNT(*) AS n FROM audit_events e WHERE e.org_id = $1
               AND NOT EXISTS (SELECT 1 FROM audit_chain c
                               WHERE c.org_id = e.org_id AND c.event_id = e.id)",
            vec![org.as_uuid().into()],
        ))
        .await
        .map_err(storage_error)?
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0);
    tx.commit().await.map_err(storage_error)?;
    Ok(OrgVerification {
        chain: verifier.finish(),
        pending: u64::try_from(pending).unwrap_or(0),
    })
}

/// Where `org`'s stored chain resumes after a retention purge: the
/// latest tombstone's position and link (`None`: it starts at genesis).
pub async fn chain_resumes(db: &Database, org: OrgId) -> Result<Option<(u64, Hash)>, StorageError> {
    let tx = db
        .begin_tenant_read(&system(org, "system:audit-verify"))
        .await?;
    let found = tombstone(&tx, org).await?;
    tx.commit().await.map_err(storage_error)?;
    found
        .map(|t| Ok((u64::try_from(t.position).unwrap_or(0), hash_of(&t.link)?)))
        .transpose()
}

/// How many of `org`'s events recorded in `[from, to)` are not chained
/// (an export of that range would leave them out).
pub async fn unchained_in(
    db: &Database,
    org: OrgId,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<u64, StorageError> {
    let backend = db.conn().get_database_backend();
    let tx = db
        .begin_tenant_read(&system(org, "system:audit-export"))
        .await?;
    let n = tx
        .query_one_raw(statement(
            backend,
            "SELECT COUNT(*) AS n FROM audit_events e
             WHERE e.org_id = $1 AND e.recorded_at >= $2 AND e.recorded_at < $3
               AND NOT EXISTS (SELECT 1 FROM audit_chain c
                               WHERE c.org_id = e.org_id AND c.event_id = e.id)",
            vec![org.as_uuid().into(), from.into(), to.into()],
        ))
        .await
        .map_err(storage_error)?
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0);
    tx.commit().await.map_err(storage_error)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Reads at most `limit` chain entries (with their events' bytes) of `org`
/// after position `after` and up to `upto`, in order. A missing event
/// comes back as `event: None`, a missing position simply does not.
async fn entries<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    after: u64,
    upto: u64,
    limit: u64,
) -> Result<Vec<ChainEntry>, StorageError> {
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT c.position AS position, c.event_id AS event_id, c.leaf AS leaf,
                    c.link AS link, e.body AS body, e.recorded_at AS recorded_at,
                    e.actor AS actor, e.action AS action, e.resource_type AS resource_type,
                    e.resource_id AS resource_id, e.outcome AS outcome
             FROM audit_chain c
             LEFT JOIN audit_events e ON e.org_id = c.org_id AND e.id = c.event_id
             WHERE c.org_id = $1 AND c.position > $2 AND c.position <= $3
             ORDER BY c.position LIMIT $4",
            vec![
                org.as_uuid().into(),
                i64::try_from(after).unwrap_or(i64::MAX).into(),
                i64::try_from(upto).unwrap_or(i64::MAX).into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await
        .map_err(storage_error)?;
    rows.iter()
        .map(|r| {
            let position: i64 = r.try_get("", "position").map_err(storage_error)?;
            let body: Option<String> = r.try_get("", "body").map_err(storage_error)?;
            let columns = match body {
                Some(_) => Some(StoredColumns {
                    at: r.try_get("", "recorded_at").map_err(storage_error)?,
                    actor: r.try_get("", "actor").map_err(storage_error)?,
                    action: r.try_get("", "action").map_err(storage_error)?,
                    resource_type: r.try_get("", "resource_type").map_err(storage_error)?,
                    resource_id: r.try_get("", "resource_id").map_err(storage_error)?,
                    outcome: r.try_get("", "outcome").map_err(storage_error)?,
                }),
                None => None,
            };
            Ok(ChainEntry {
                position: u64::try_from(position).unwrap_or(0),
                event_id: r.try_get("", "event_id").map_err(storage_error)?,
                leaf: hash_of(&r.try_get::<Vec<u8>>("", "leaf").map_err(storage_error)?)?,
                link: hash_of(&r.try_get::<Vec<u8>>("", "link").map_err(storage_error)?)?,
                event: body.map(String::into_bytes),
                columns,
            })
        })
        .collect()
}

/// The latest tombstone of `org` (where the chain resumes), if any.
async fn tombstone<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
) -> Result<Option<audit_checkpoint::Model>, StorageError> {
    audit_checkpoint::Entity::find()
        .in_org(org)
        .filter(audit_checkpoint::Column::Kind.eq(CheckpointKind::Tombstone.as_str()))
        .order_by_desc(audit_checkpoint::Column::Position)
        .one(conn)
        .await
        .map_err(storage_error)
}

/// The link just before `position`: the genesis, a tombstone's, or the
/// stored link at `position - 1`.
async fn link_before<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    position: u64,
) -> Result<Hash, StorageError> {
    if position <= 1 {
        return Ok(carapace_audit::chain::genesis(org));
    }
    if let Some(t) = tombstone(conn, org).await?
        && u64::try_from(t.position).unwrap_or(0) == position - 1
    {
        return hash_of(&t.link);
    }
    let row = audit_chain::Entity::find()
        .in_org(org)
        .filter(audit_chain::Column::Position.eq(i64::try_from(position - 1).unwrap_or(i64::MAX)))
        .one(conn)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| StorageError::Internal("chain position missing: run audit verify".into()))?;
    hash_of(&row.link)
}

/// Exports the chained events of `org` recorded in `[from, to)`: the
/// contiguous positions from the first to the last such event, as
/// `events.ndjson` bytes, and the manifest signed with `key`.
pub async fn export_org(
    db: &Database,
    org: OrgId,
    from: OffsetDateTime,
    to: OffsetDateTime,
    key: &SigningKey,
) -> Result<(carapace_audit::export::Manifest, Vec<u8>), StorageError> {
    let mut file = Vec::new();
    let manifest = export_org_to(db, org, from, to, key, &mut file).await?;
    Ok((manifest, file))
}

/// Positions read per page of an export.
const EXPORT_PAGE: u64 = 1000;

/// Like [`export_org`], writing `events.ndjson` to `out` a page at a time
/// (memory stays flat however long the range), hashing as it writes.
pub async fn export_org_to<W: std::io::Write>(
    db: &Database,
    org: OrgId,
    from: OffsetDateTime,
    to: OffsetDateTime,
    key: &SigningKey,
    out: &mut W,
) -> Result<carapace_audit::export::Manifest, StorageError> {
    use carapace_audit::export::{ExportedCheckpoint, Manifest, ManifestBody, bytes_hex, line};
    use sha2::Digest as _;
    use time::format_description::well_known::Rfc3339;
    let backend = db.conn().get_database_backend();
    let tx = db
        .begin_tenant_read(&system(org, "system:audit-export"))
        .await?;
    let span = tx
        .query_one_raw(statement(
            backend,
            "SELECT MIN(c.position) AS first, MAX(c.position) AS last
             FROM audit_chain c JOIN audit_events e ON e.org_id = c.org_id AND e.id = c.event_id
             WHERE c.org_id = $1 AND e.recorded_at >= $2 AND e.recorded_at < $3",
            vec![org.as_uuid().into(), from.into(), to.into()],
        ))
        .await
        .map_err(storage_error)?;
    let bound = |name: &str| {
        span.as_ref()
            .and_then(|r| r.try_get::<Option<i64>>("", name).ok().flatten())
            .and_then(|p| u64::try_from(p).ok())
    };
    let (first, last) = match (bound("first"), bound("last")) {
        (Some(f), Some(l)) => (f, l),
        _ => (0, 0),
    };
    let mut hasher = sha2::Sha256::new();
    let mut count = 0;
    let prev = if first == 0 {
        carapace_audit::chain::genesis(org)
    } else {
        link_before(&tx, org, first).await?
    };
    let mut last_link = prev;
    let mut after = first.saturating_sub(1);
    while first > 0 && after < last {
        let page = entries(&tx, org, after, last, EXPORT_PAGE).await?;
        let Some(end) = page.last().map(|e| e.position) else {
            break;
        };
        for e in &page {
            let bytes = e.event.as_deref().ok_or_else(|| {
                StorageError::Internal("an exported position has no event: run audit verify".into())
            })?;
            let mut text = serde_json::to_vec(&line(e.position, &e.leaf, &e.link, bytes))
                .map_err(|e| StorageError::Internal(e.to_string().into()))?;
            text.push(b'\n');
            hasher.update(&text);
            out.write_all(&text)
                .map_err(|e| StorageError::Internal(Box::new(e)))?;
            last_link = e.link;
            count += 1;
        }
        after = end;
    }
    let checkpoints = audit_checkpoint::Entity::find()
        .in_org(org)
        .filter(audit_checkpoint::Column::Kind.eq(CheckpointKind::Head.as_str()))
        .filter(
            audit_checkpoint::Column::Position.gte(i64::try_from(first.max(1)).unwrap_or(i64::MAX)),
        )
        .filter(audit_checkpoint::Column::Position.lte(i64::try_from(last).unwrap_or(i64::MAX)))
        .order_by_asc(audit_checkpoint::Column::Position)
        .all(&tx)
        .await
        .map_err(storage_error)?
        .into_iter()
        .map(|c| ExportedCheckpoint {
            position: u64::try_from(c.position).unwrap_or(0),
            link: bytes_hex(&c.link),
            signed_at: c.signed_at.unix_timestamp(),
            signature: bytes_hex(&c.signature),
        })
        .collect();
    tx.commit().await.map_err(storage_error)?;
    let body = ManifestBody {
        format: 1,
        org,
        from: from.format(&Rfc3339).unwrap_or_default(),
        to: to.format(&Rfc3339).unwrap_or_default(),
        first_position: first,
        last_position: last,
        count,
        prev_link: carapace_audit::chain::hex(&prev),
        last_link: carapace_audit::chain::hex(&last_link),
        events_sha256: bytes_hex(&hasher.finalize()),
        checkpoints,
        public_key: bytes_hex(key.verifying_key().as_bytes()),
    };
    out.flush()
        .map_err(|e| StorageError::Internal(Box::new(e)))?;
    Ok(Manifest::sign(body, key))
}

/// What a retention purge removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Purged {
    /// Positions removed: `from..=to` (none when `to < from`).
    pub from: u64,
    /// Last removed position.
    pub to: u64,
}

/// Removes the prefix of `org`'s chain whose events were recorded before
/// `cutoff` (the retention limit) and that the verified export
/// (`manifest`, `events_file`) holds, leaving a signed tombstone, and
/// records the purge as an event. Runs as the schema owner (`owner_db`):
/// the server role cannot delete audit rows, and the tables' triggers let
/// only this procedure through. Refuses when the export does not start at
/// the chain's current start or does not match the stored chain.
pub async fn purge_org(
    owner_db: &Database,
    org: OrgId,
    cutoff: OffsetDateTime,
    manifest: &carapace_audit::export::Manifest,
    events_file: &[u8],
    key: &SigningKey,
) -> Result<Purged, StorageError> {
    use carapace_audit::export::{ExportLine, verify_export};
    if manifest.body.org != org {
        return Err(StorageError::Constraint(
            "the export is of another organization".into(),
        ));
    }
    verify_export(manifest, events_file, &key.verifying_key())
        .map_err(|e| StorageError::Constraint(format!("the export does not verify: {e}").into()))?;
    let exported: std::collections::HashMap<u64, String> = events_file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<ExportLine>(l).ok())
        .map(|l| (l.position, l.link))
        .collect();
    let backend = owner_db.conn().get_database_backend();
    let actor = system(org, "system:retention");
    let tx = owner_db.begin_tenant(&actor).await?;
    let start = tombstone(&tx, org)
        .await?
        .map_or(0, |t| u64::try_from(t.position).unwrap_or(0));
    if manifest.body.count == 0 || manifest.body.first_position > start + 1 {
        return Err(StorageError::Constraint(
            "the export does not cover the start of the chain".into(),
        ));
    }
    // The first position at or after the cutoff ends the removable prefix.
    let keep_from = tx
        .query_one_raw(statement(
            backend,
            "SELECT MIN(c.position) AS p FROM audit_chain c
             JOIN audit_events e ON e.org_id = c.org_id AND e.id = c.event_id
             WHERE c.org_id = $1 AND c.position > $2 AND e.recorded_at >= $3",
            vec![
                org.as_uuid().into(),
                i64::try_from(start).unwrap_or(i64::MAX).into(),
                cutoff.into(),
            ],
        ))
        .await
        .map_err(storage_error)?
        .and_then(|r| r.try_get::<Option<i64>>("", "p").ok().flatten())
        .and_then(|p| u64::try_from(p).ok());
    let head = audit_chain::Entity::find()
        .in_org(org)
        .order_by_desc(audit_chain::Column::Position)
        .one(&tx)
        .await
        .map_err(storage_error)?
        .map_or(0, |h| u64::try_from(h.position).unwrap_or(0));
    let end = keep_from
        .map_or(head, |k| k.saturating_sub(1))
        .min(manifest.body.last_position);
    if end <= start {
        return Ok(Purged {
            from: start + 1,
            to: start,
        });
    }
    let doomed = entries(&tx, org, start, end, u64::MAX).await?;
    for e in &doomed {
        if exported.get(&e.position) != Some(&carapace_audit::chain::hex(&e.link)) {
            return Err(StorageError::Constraint(
                format!("position {} differs from the export", e.position).into(),
            ));
        }
    }
    let last_link = doomed
        .last()
        .map(|e| e.link)
        .ok_or_else(|| StorageError::Internal("nothing to purge".into()))?;
    // Open the retention window: the append-only triggers let DELETE through.
    match backend {
        DbBackend::Postgres => {
            tx.execute_raw(Statement::from_string(
                backend,
                "SELECT set_config('carapace.audit_retention', 'on', true)",
            ))
            .await
            .map_err(storage_error)?;
        }
        _ => {
            tx.execute_raw(Statement::from_string(
                backend,
                "INSERT INTO audit_retention_window (opened_at) VALUES (CURRENT_TIMESTAMP)",
            ))
            .await
            .map_err(storage_error)?;
        }
    }
    let ids: Vec<Uuid> = doomed.iter().map(|e| e.event_id).collect();
    for chunk in ids.chunks(500) {
        audit_event::Entity::delete_many()
            .in_org(org)
            .filter(audit_event::Column::Id.is_in(chunk.to_vec()))
            .exec(&tx)
            .await
            .map_err(storage_error)?;
    }
    audit_chain::Entity::delete_many()
        .in_org(org)
        .filter(audit_chain::Column::Position.lte(i64::try_from(end).unwrap_or(i64::MAX)))
        .exec(&tx)
        .await
        .map_err(storage_error)?;
    if backend != DbBackend::Postgres {
        tx.execute_raw(Statement::from_string(
            backend,
            "DELETE FROM audit_retention_window",
        ))
        .await
        .map_err(storage_error)?;
    }
    insert_checkpoint(
        &tx,
        &Checkpoint::sign(
            key,
            org,
            CheckpointKind::Tombstone,
            end,
            last_link,
            OffsetDateTime::now_utc(),
        ),
    )
    .await?;
    let purge = Access::system(actor.clone())
        .event("audit.purge", "audit_log", None, Outcome::Allowed)
        .with_detail(format!(
            "positions {}..={end} removed past retention; export sha256 {}",
            start + 1,
            manifest.body.events_sha256
        ));
    append(&tx, std::slice::from_ref(&purge)).await?;
    tx.commit().await.map_err(storage_error)?;
    Ok(Purged {
        from: start + 1,
        to: end,
    })
}
