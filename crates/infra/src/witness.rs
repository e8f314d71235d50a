//! The audit witness on the storage side (docs/adr/0008-audit-trail.md):
//! the queue of signed checkpoints still to be written to the witness
//! (`audit_witness_queue`, migration m0022), the anchoring pass that writes
//! them, the backlog every instance reads for readiness and the PHI gate,
//! and the comparison of an organization's stored chain with its witness
//! ([`compare_org`]).
//!
//! The queue is a hint, never evidence: the chainer queues each checkpoint
//! in the transaction that signs it (`queue`), the pass marks it anchored
//! once the witness holds it. Whoever can write the database can mark a
//! checkpoint anchored that is not; `audit verify` then reports it as never
//! anchored, and what the witness holds is not affected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carapace_audit::chain::{Checkpoint, CheckpointKind};
use carapace_audit::witness::{
    DatabaseSide, Witness, WitnessError, WitnessReport, WitnessView, Witnessed, etag, object_name,
    position_in, unknown_orgs as unknown,
};
use carapace_tenancy::{OrgId, StorageError};
use ed25519_dalek::VerifyingKey;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sea_orm::{ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::Fetch as _;
use crate::db::statement;
use crate::db::{Database, storage_error};
use crate::entity::audit_checkpoint;
use crate::scope::Scoped as _;
use crate::trail::{checkpoint_of, hash_of, system};

/// Checkpoints written per anchoring pass, at most.
const ANCHOR_BATCH: u64 = 500;
/// Witness objects fetched at once by a comparison.
const FETCHES_AT_ONCE: usize = 8;

/// Queues `org`'s checkpoints that the queue does not hold yet: every
/// checkpoint of a kind newer than the newest queued one of that kind, or
/// only the newest when none of that kind was ever queued (a witness
/// configured on a running deployment starts from its latest checkpoints).
/// Called in the chainer's transaction, after it signed (or not), so a
/// checkpoint is queued in the transaction that stores it, and a tombstone
/// signed by `audit purge` is queued by the next pass.
pub(crate) async fn queue<C: ConnectionTrait>(
    tx: &C,
    org: OrgId,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    // Placeholders in order of appearance (SQLite numbers them so).
    tx.execute_raw(statement(
        tx.get_database_backend(),
        "INSERT INTO audit_witness_queue (org_id, kind, position, queued_at)
         SELECT c.org_id, c.kind, c.position, $1 FROM audit_checkpoints c
         WHERE c.org_id = $2
           AND c.position > COALESCE(
                 (SELECT MAX(q.position) FROM audit_witness_queue q
                  WHERE q.org_id = c.org_id AND q.kind = c.kind),
                 (SELECT MAX(n.position) FROM audit_checkpoints n
                  WHERE n.org_id = c.org_id AND n.kind = c.kind) - 1)",
        vec![now.into(), org.as_uuid().into()],
    ))
    .await
    .map_err(storage_error)?;
    Ok(())
}

/// Checkpoints waiting for the witness, across organizations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// How many.
    pub waiting: u64,
    /// When the oldest was queued.
    pub oldest: Option<OffsetDateTime>,
}

impl Backlog {
    /// How long the oldest has waited at `now` (zero when none waits).
    pub fn age(&self, now: OffsetDateTime) -> Duration {
        self.oldest
            .map(|t| (now - t).try_into().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO)
    }
}

/// Reads the backlog (one indexed query; every instance may read the
/// queue, whatever its tenant setting).
pub async fn backlog(db: &Database) -> Result<Backlog, StorageError> {
    let conn = db.conn();
    let row = conn
        .query_one_raw(statement(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n, MIN(queued_at) AS oldest
             FROM audit_witness_queue WHERE anchored_at IS NULL",
            vec![],
        ))
        .await
        .map_err(storage_error)?;
    let Some(row) = row else {
        return Ok(Backlog {
            waiting: 0,
            oldest: None,
        });
    };
    let waiting: i64 = row.try_get("", "n").map_err(storage_error)?;
    let oldest: Option<OffsetDateTime> = row.try_get("", "oldest").map_err(storage_error)?;
    Ok(Backlog {
        waiting: u64::try_from(waiting).unwrap_or(0),
        oldest,
    })
}

/// Why an anchoring pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The witness failed (what was written before stays marked).
    #[error(transparent)]
    Witness(#[from] WitnessError),
}

/// Writes up to `ANCHOR_BATCH` waiting checkpoints to `witness`, oldest
/// first, and marks each once written; returns how many. A queued
/// checkpoint that is gone from the database, or whose signature `key`
/// does not verify, is not written: it stays waiting (and is logged), so
/// the backlog grows and readiness reports it.
pub async fn anchor_waiting(
    db: &Database,
    witness: &dyn Witness,
    key: &VerifyingKey,
) -> Result<u64, AnchorError> {
    let conn = db.conn();
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT org_id, kind, position FROM audit_witness_queue
             WHERE anchored_at IS NULL ORDER BY queued_at, org_id, position LIMIT $1",
            vec![i64::try_from(ANCHOR_BATCH).unwrap_or(i64::MAX).into()],
        ))
        .await
        .map_err(storage_error)?;
    let mut by_org: BTreeMap<Uuid, Vec<(String, i64)>> = BTreeMap::new();
    for r in &rows {
        by_org
            .entry(r.try_get("", "org_id").map_err(storage_error)?)
            .or_default()
            .push((
                r.try_get("", "kind").map_err(storage_error)?,
                r.try_get("", "position").map_err(storage_error)?,
            ));
    }
    let mut written = 0;
    for (org, waiting) in by_org {
        let org = OrgId::from_uuid(org);
        let ctx = system(org, "system:audit-witness");
        // Read, then write to the witness outside any transaction (no lock
        // is held while the network answers), then mark.
        let tx = db.begin_tenant_read(&ctx).await?;
        let mut found = Vec::new();
        for (kind, position) in &waiting {
            let row = audit_checkpoint::Entity::find()
                .in_org(org)
                .filter(audit_checkpoint::Column::Kind.eq(kind.as_str()))
                .filter(audit_checkpoint::Column::Position.eq(*position))
                .one_in(&tx)
                .await?;
            match row.map(|r| checkpoint_of(&r)).transpose()? {
                Some(cp) if cp.is_signed_by(key) => found.push(cp),
                Some(_) => {
                    tracing::error!(%org, kind, position, "a checkpoint waiting for the witness does not verify: altered in the database; not anchored")
                }
                None => {
                    tracing::error!(%org, kind, position, "a checkpoint waiting for the witness is gone from the database; not anchored")
                }
            }
        }
        tx.commit().await.map_err(storage_error)?;
        for cp in found {
            witness.put(&cp).await?;
            let tx = db.begin_tenant(&ctx).await?;
            tx.execute_raw(statement(
                backend,
                "UPDATE audit_witness_queue SET anchored_at = $1
                 WHERE org_id = $2 AND kind = $3 AND position = $4",
                vec![
                    OffsetDateTime::now_utc().into(),
                    org.as_uuid().into(),
                    cp.kind.as_str().into(),
                    i64::try_from(cp.position).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(storage_error)?;
            tx.commit().await.map_err(storage_error)?;
            written += 1;
        }
    }
    Ok(written)
}

/// The chainer's witness: the port, and when to try again after a failure.
pub struct Anchoring {
    witness: Arc<dyn Witness>,
    retry: Mutex<Retry>,
    longest_wait: Duration,
}

struct Retry {
    not_before: Option<Instant>,
    wait: Duration,
}

impl std::fmt::Debug for Anchoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchoring").finish_non_exhaustive()
    }
}

impl Anchoring {
    /// Anchoring to `witness`; after a failure it waits 1 s, doubling up
    /// to `longest_wait`, before trying again, so an unreachable witness
    /// does not slow every chaining pass by its timeout.
    pub fn new(witness: Arc<dyn Witness>, longest_wait: Duration) -> Self {
        Self {
            witness,
            retry: Mutex::new(Retry {
                not_before: None,
                wait: Duration::from_secs(1),
            }),
            longest_wait: longest_wait.max(Duration::from_secs(1)),
        }
    }

    /// One anchoring pass, unless waiting after a failure; failures are
    /// logged (chaining goes on: the queue keeps what waits).
    pub(crate) async fn pass(&self, db: &Database, key: &VerifyingKey) {
        let now = Instant::now();
        if let Ok(r) = self.retry.lock()
            && r.not_before.is_some_and(|t| now < t)
        {
            return;
        }
        let outcome = anchor_waiting(db, self.witness.as_ref(), key).await;
        let Ok(mut r) = self.retry.lock() else {
            return;
        };
        match outcome {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(checkpoints = n, "audit checkpoints anchored in the witness");
                }
                r.not_before = None;
                r.wait = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_secs = r.wait.as_secs(), "anchoring audit checkpoints failed; they wait in the queue");
                r.not_before = Some(Instant::now() + r.wait);
                r.wait = (r.wait * 2).min(self.longest_wait);
            }
        }
    }
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The witness failed.
    #[error(transparent)]
    Witness(#[from] WitnessError),
}

/// Compares `org`'s stored chain and checkpoints with what `witness`
/// holds (read-only). A stored checkpoint signed more than `overdue`
/// before now and absent from the witness is reported as never anchored.
///
/// The witness is listed first: whatever it holds was stored in the
/// database before it was written there, so the database read after it
/// sees it. A listed version whose digest equals the stored checkpoint of
/// its name is not fetched (its bytes are that checkpoint's); the others
/// are, a few at a time.
pub async fn compare_org(
    db: &Database,
    org: OrgId,
    key: &VerifyingKey,
    witness: &dyn Witness,
    overdue: Duration,
) -> Result<WitnessReport, CompareError> {
    let listed = witness.list(org).await?;
    let side = database_side(db, org, listed.iter().filter_map(|l| position_in(&l.name))).await?;
    let stored: BTreeMap<String, &Checkpoint> = side
        .checkpoints
        .iter()
        .map(|c| (object_name(c), c))
        .collect();
    let objects: Vec<Witnessed> = futures_util::stream::iter(listed)
        .map(|l| {
            let known = stored
                .get(&l.name)
                .filter(|c| l.etag.as_deref() == Some(etag(c).as_str()))
                .map(|c| carapace_audit::witness::encode(c));
            async move {
                Ok::<_, WitnessError>(match (l.delete_marker, known) {
                    (true, _) => Witnessed::DeleteMarker {
                        name: l.name,
                        version: l.version,
                    },
                    (false, Some(body)) => Witnessed::Object {
                        name: l.name,
                        version: l.version,
                        body,
                    },
                    (false, None) => {
                        let body = witness.get(&l.name, l.version.as_deref()).await?;
                        Witnessed::Object {
                            name: l.name,
                            version: l.version,
                            body,
                        }
                    }
                })
            }
        })
        .buffered(FETCHES_AT_ONCE)
        .try_collect()
        .await?;
    let view = WitnessView::read(org, &objects, key);
    Ok(view.compare(
        &side,
        OffsetDateTime::now_utc(),
        time::Duration::try_from(overdue).unwrap_or(time::Duration::MAX),
    ))
}

/// The database's side of a comparison: every checkpoint of `org`, where
/// its chain starts and ends, and the stored links at `positions` (those
/// inside the chain).
async fn database_side(
    db: &Database,
    org: OrgId,
    positions: impl Iterator<Item = u64>,
) -> Result<DatabaseSide, StorageError> {
    let backend = db.conn().get_database_backend();
    let tx = db
        .begin_tenant_read(&system(org, "system:audit-verify"))
        .await?;
    let checkpoints = audit_checkpoint::Entity::find()
        .in_org(org)
        .all_in(&tx)
        .await?
        .iter()
        .map(checkpoint_of)
        .collect::<Result<Vec<_>, _>>()?;
    let starts_after = checkpoints
        .iter()
        .filter(|c| c.kind == CheckpointKind::Tombstone)
        .map(|c| c.position)
        .max()
        .unwrap_or(0);
    let last = tx
        .query_one_raw(statement(
            backend,
            "SELECT MAX(position) AS p FROM audit_chain WHERE org_id = $1",
            vec![org.as_uuid().into()],
        ))
        .await
        .map_err(storage_error)?
        .and_then(|r| r.try_get::<Option<i64>>("", "p").ok().flatten())
        .and_then(|p| u64::try_from(p).ok());
    let ends_at = last.unwrap_or(0).max(starts_after);
    let mut wanted: Vec<u64> = positions
        .filter(|p| *p > starts_after && *p <= ends_at)
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut links = BTreeMap::new();
    for chunk in wanted.chunks(500) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let mut values: Vec<Value> = vec![org.as_uuid().into()];
        values.extend(
            chunk
                .iter()
                .map(|p| Value::from(i64::try_from(*p).unwrap_or(i64::MAX))),
        );
        let rows = tx
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT position, link FROM audit_chain WHERE org_id = $1 AND position IN ({})",
                    marks.join(", ")
                ),
                values,
            ))
            .await
            .map_err(storage_error)?;
        for r in rows {
            let position: i64 = r.try_get("", "position").map_err(storage_error)?;
            let link: Vec<u8> = r.try_get("", "link").map_err(storage_error)?;
            links.insert(u64::try_from(position).unwrap_or(0), hash_of(&link)?);
        }
    }
    tx.commit().await.map_err(storage_error)?;
    Ok(DatabaseSide {
        ends_at,
        starts_after,
        links,
        checkpoints,
    })
}

/// The organizations the witness holds checkpoints of that the database
/// does not know (a database restored from a copy older than them).
pub async fn unknown_orgs(
    db: &Database,
    witness: &dyn Witness,
) -> Result<Vec<String>, CompareError> {
    let named = witness.orgs().await?;
    let known = crate::organizations::every_org(db).await?;
    Ok(unknown(&named, &known))
}
