//! Verifying an organization's chain against its signed checkpoints, and the reads that verification and export share.

use super::*;
use crate::db::Fetch as _;

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
        .all_in(&tx)
        .await?
    {
        let cp = crate::trail::checkpoint_of(&c)?;
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
pub(super) async fn entries<C: ConnectionTrait>(
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
pub(super) async fn tombstone<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
) -> Result<Option<audit_checkpoint::Model>, StorageError> {
    audit_checkpoint::Entity::find()
        .in_org(org)
        .filter(audit_checkpoint::Column::Kind.eq(CheckpointKind::Tombstone.as_str()))
        .order_by_desc(audit_checkpoint::Column::Position)
        .one_in(conn)
        .await
}

/// The link just before `position`: the genesis, a tombstone's, or the
/// stored link at `position - 1`.
pub(super) async fn link_before<C: ConnectionTrait>(
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
        .one_in(conn)
        .await?
        .ok_or_else(|| StorageError::Internal("chain position missing: run audit verify".into()))?;
    hash_of(&row.link)
}
