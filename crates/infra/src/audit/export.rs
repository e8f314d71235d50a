//! Exporting an organization's chained events with a signed manifest.

use super::*;
use crate::db::Fetch as _;

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
        .all_in(&tx)
        .await?
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
