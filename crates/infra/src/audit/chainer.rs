//! The chaining job: links appended events into each organization's hash chain, signs checkpoints, queues alerts and witness anchors.

use super::*;
use crate::db::{Fetch as _, Run as _};

/// Links new events into their organization's chain and signs checkpoints;
/// with a witness ([`Self::with_witness`]) it also queues each checkpoint
/// and writes the waiting ones to the witness after every pass.
pub struct AuditChainer {
    db: Database,
    key: SigningKey,
    checkpoint_every: Duration,
    witness: Option<crate::witness::Anchoring>,
    /// Where each organization's backlog stands between passes
    /// (PostgreSQL): see [`Backlog`].
    backlogs: std::sync::Mutex<std::collections::HashMap<OrgId, Backlog>>,
}

/// What a pass that chained a full batch knows for the next one, so that
/// draining a backlog reads each event once instead of every pass
/// re-reading everything since the horizon (PostgreSQL only; held in
/// memory: another chainer, or this one after a restart, starts from the
/// horizon, which is always correct).
///
/// After such a pass every event that was visible to it, at or after the
/// horizon and no later than `cursor` in chain order, is chained. So an
/// event still unchained is either after `cursor`, or was not visible
/// then: its transaction id is at least `seen_from` (the pass's snapshot
/// horizon). The next pass reads exactly those two sets.
#[derive(Clone, Debug)]
struct Backlog {
    /// The organization's horizon the pass ran against.
    horizon: String,
    /// The last event it chained: (recorded at, id).
    cursor: (OffsetDateTime, Uuid),
    /// Every transaction below this had finished when it looked.
    seen_from: String,
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
            backlogs: std::sync::Mutex::default(),
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
            .one_in(&tx)
            .await?;
        let (mut head, since) = match &last {
            Some(l) => {
                let at = audit_event::Entity::find()
                    .in_org(org)
                    .filter(audit_event::Column::Id.eq(l.event_id))
                    .one_in(&tx)
                    .await?
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
        // Where the next pass resumes, kept only once this pass commits: a
        // cursor past events whose chaining rolled back would skip them.
        let mut resume_next: Option<Backlog> = None;
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
                let resume = self
                    .backlogs
                    .lock()
                    .ok()
                    .and_then(|b| b.get(&org).cloned())
                    .filter(|b| b.horizon == last_horizon);
                let pending = match resume {
                    None => {
                        unchained(
                            &tx,
                            org,
                            "e.tx >= $2::xid8",
                            last_horizon.clone().into(),
                            None,
                        )
                        .await?
                    }
                    Some(b) => {
                        let (at, id) = b.cursor;
                        let mut rows = unchained(
                            &tx,
                            org,
                            "e.tx >= $2::xid8 AND (e.recorded_at, e.id) > ($4, $5)",
                            last_horizon.clone().into(),
                            Some((at, id)),
                        )
                        .await?;
                        rows.extend(
                            unchained(&tx, org, "e.tx >= $2::xid8", b.seen_from.into(), None)
                                .await?,
                        );
                        first_in_chain_order(rows)?
                    }
                };
                let full = u64::try_from(pending.len()).unwrap_or(u64::MAX) >= CHAIN_BATCH;
                if let Ok(mut backlogs) = self.backlogs.lock() {
                    backlogs.remove(&org);
                }
                resume_next = match pending.last() {
                    Some(last) if full => Some(Backlog {
                        horizon: last_horizon,
                        cursor: chain_key(last)?,
                        seen_from: now_horizon.clone(),
                    }),
                    _ => None,
                };
                if !full {
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
            _ => unchained(&tx, org, "e.recorded_at >= $2", since.into(), None).await?,
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
            .one_in(&tx)
            .await?;
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
        if let (Some(next), Ok(mut backlogs)) = (resume_next, self.backlogs.lock()) {
            backlogs.insert(org, next);
        }
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
    after: Option<(OffsetDateTime, Uuid)>,
) -> Result<Vec<sea_orm::QueryResult>, StorageError> {
    let sql = format!(
        "SELECT e.id AS id, e.recorded_at AS at, e.body AS body FROM audit_events e
         WHERE e.org_id = $1 AND {since}
           AND NOT EXISTS (SELECT 1 FROM audit_chain c
                           WHERE c.org_id = e.org_id AND c.event_id = e.id)
         ORDER BY e.recorded_at, e.id LIMIT $3"
    );
    let mut values = vec![
        org.as_uuid().into(),
        bound,
        i64::try_from(CHAIN_BATCH).unwrap_or(i64::MAX).into(),
    ];
    if let Some((at, id)) = after {
        values.extend([at.into(), id.into()]);
    }
    conn.query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await
        .map_err(storage_error)
}

/// An unchained row's place in chain order: (recorded at, id).
fn chain_key(row: &sea_orm::QueryResult) -> Result<(OffsetDateTime, Uuid), StorageError> {
    Ok((
        row.try_get("", "at").map_err(storage_error)?,
        row.try_get("", "id").map_err(storage_error)?,
    ))
}

/// The first [`CHAIN_BATCH`] of `rows` in chain order, each once (the two
/// reads of a resumed pass can both return an event).
fn first_in_chain_order(
    rows: Vec<sea_orm::QueryResult>,
) -> Result<Vec<sea_orm::QueryResult>, StorageError> {
    let mut keyed = rows
        .into_iter()
        .map(|r| chain_key(&r).map(|k| (k, r)))
        .collect::<Result<Vec<_>, _>>()?;
    keyed.sort_by_key(|k| k.0);
    keyed.dedup_by(|a, b| a.0 == b.0);
    Ok(keyed
        .into_iter()
        .take(usize::try_from(CHAIN_BATCH).unwrap_or(usize::MAX))
        .map(|(_, r)| r)
        .collect())
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

pub(super) async fn insert_checkpoint<C: ConnectionTrait>(
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
    .run(conn)
    .await?;
    Ok(())
}
