//! Retention: purging an exported, verified prefix of an organization's chain.

use super::*;
use crate::db::{Fetch as _, Run as _};

/// Chain entries a purge compares and removes per round trip.
const PURGE_PAGE: u64 = 2_000;

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
    mut events_file: impl std::io::BufRead + std::io::Seek,
    key: &SigningKey,
) -> Result<Purged, StorageError> {
    use carapace_audit::export::{ExportLinks, verify_export};
    if manifest.body.org != org {
        return Err(StorageError::Constraint(
            "the export is of another organization".into(),
        ));
    }
    let refused = |e: carapace_audit::export::ExportProblem| {
        StorageError::Constraint(format!("the export does not verify: {e}").into())
    };
    verify_export(manifest, &mut events_file, &key.verifying_key()).map_err(refused)?;
    events_file.seek(std::io::SeekFrom::Start(0)).map_err(|e| {
        refused(carapace_audit::export::ExportProblem::Unreadable(
            e.to_string(),
        ))
    })?;
    let mut exported = ExportLinks::new(events_file);
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
        .one_in(&tx)
        .await?
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
    // A page at a time, each stored link is compared with the export's and
    // the page's events removed: neither the export nor the stretch is held
    // whole. Any difference rolls the whole transaction back.
    let mut after = start;
    let mut last_link = None;
    while after < end {
        let page = entries(&tx, org, after, end, PURGE_PAGE).await?;
        let Some(last) = page.last() else { break };
        for e in &page {
            if exported.link_at(e.position).map_err(refused)?
                != Some(carapace_audit::chain::hex(&e.link))
            {
                return Err(StorageError::Constraint(
                    format!("position {} differs from the export", e.position).into(),
                ));
            }
        }
        let ids: Vec<Uuid> = page.iter().map(|e| e.event_id).collect();
        for chunk in ids.chunks(500) {
            audit_event::Entity::delete_many()
                .in_org(org)
                .filter(audit_event::Column::Id.is_in(chunk.to_vec()))
                .run(&tx)
                .await?;
        }
        (after, last_link) = (last.position, Some(last.link));
    }
    if after != end {
        return Err(StorageError::Internal(
            format!("the stored chain stops at position {after}, before {end}").into(),
        ));
    }
    let last_link = last_link.ok_or_else(|| StorageError::Internal("nothing to purge".into()))?;
    // The file compared is the file verified (it was read twice).
    exported.finish(manifest).map_err(refused)?;
    audit_chain::Entity::delete_many()
        .in_org(org)
        .filter(audit_chain::Column::Position.lte(i64::try_from(end).unwrap_or(i64::MAX)))
        .run(&tx)
        .await?;
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
