//! Group commit for audited tenant work (ADR 0010).
//!
//! An audited read is a transaction that writes: its audit row must reach
//! the disk before the data leaves, so each read pays a commit and a WAL
//! flush. Under load, [`GroupCommit`] runs the units of work that are
//! waiting at that moment in one transaction, sorted by organization: for
//! each organization it sets the tenant (`set_config('app.org_id', …,
//! true)`, so row-level security confines those units to it), runs its
//! units, and writes the audit events they returned with one INSERT; one
//! COMMIT then makes every unit's data and events durable together. No
//! unit's result is released before that commit.
//!
//! There is no background worker and no timer: a caller queues its unit,
//! and whoever holds one of the `workers` permits takes everything queued
//! (up to `max_batch`) and runs it in a spawned task. Alone, a unit runs at
//! once in its own transaction; only when every permit is busy do units
//! wait, and then they share the next commit.
//!
//! If anything in a shared transaction fails, it is rolled back and each of
//! its units is run again alone, so one unit's failure is only its own.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use carapace_audit::AuditEvent;
use carapace_tenancy::{OrgId, StorageError};
use sea_orm::DatabaseTransaction;
use tokio::sync::{Semaphore, oneshot};

use super::Database;

/// What a unit of work returns: its statements' future on the transaction.
pub(crate) type UnitFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A unit's result and the audit events that must commit with it.
pub(crate) type Audited<T> = (T, Vec<AuditEvent>);

type Unit =
    Box<dyn for<'a> Fn(&'a DatabaseTransaction) -> UnitFuture<'a, Vec<AuditEvent>> + Send + Sync>;

struct Job {
    org: OrgId,
    unit: Unit,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// Units of tenant work waiting to share a commit.
pub(crate) struct GroupCommit {
    queue: Mutex<VecDeque<Job>>,
    permits: Arc<Semaphore>,
    max_batch: usize,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("workers", &self.permits.available_permits())
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// Most units in one transaction.
pub(crate) const MAX_BATCH: usize = 16;

impl GroupCommit {
    /// At most `workers` transactions at once (each holds one pooled
    /// connection), each with at most `max_batch` units.
    pub(crate) fn new(workers: usize, max_batch: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            permits: Arc::new(Semaphore::new(workers.max(1))),
            max_batch: max_batch.max(1),
        }
    }

    fn take(&self) -> Vec<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = queue.len().min(self.max_batch);
        queue.drain(..n).collect()
    }

    fn push(&self, job: Job) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(job);
    }
}

impl Database {
    /// Runs `unit` for `org` in a transaction that may be shared with other
    /// organizations' units, writes the audit events it returns in that
    /// same transaction (one INSERT per organization's units), and returns
    /// its result once the transaction has committed. The transaction
    /// already carries `org`'s tenant setting when `unit` starts; `unit`
    /// may be run more than once (after a shared transaction failed), so it
    /// must only touch the transaction.
    pub(crate) async fn grouped<T, F>(&self, org: OrgId, unit: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a DatabaseTransaction) -> UnitFuture<'a, Audited<T>>
            + Send
            + Sync
            + 'static,
    {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let unit: Unit = Box::new(move |tx| {
            let run = unit(tx);
            let out = out.clone();
            Box::pin(async move {
                let (value, events) = run.await?;
                *out.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
                Ok(events)
            })
        });
        let (done, mut finished) = oneshot::channel();
        let group = &self.group;
        group.push(Job { org, unit, done });
        loop {
            tokio::select! {
                biased;
                result = &mut finished => return settle(result, &slot),
                permit = group.permits.clone().acquire_owned() => {
                    let permit = permit.map_err(|_| StorageError::Internal("group commit closed".into()))?;
                    let jobs = group.take();
                    if jobs.is_empty() {
                        // Ours is already in somebody's transaction.
                        drop(permit);
                        return settle(finished.await, &slot);
                    }
                    let db = self.clone();
                    // Spawned so that a caller going away (a dropped request)
                    // never abandons the other units in the transaction.
                    tokio::spawn(async move {
                        db.run_jobs(jobs).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn run_jobs(&self, mut jobs: Vec<Job>) {
        // One organization's units next to each other share its setting.
        jobs.sort_by_key(|j| j.org.as_uuid());
        if jobs.len() > 1 && self.run_together(&jobs).await.is_ok() {
            for job in jobs {
                let _ = job.done.send(Ok(()));
            }
            return;
        }
        // Alone, or the shared transaction rolled back (nothing of any unit
        // is kept): each unit runs in its own.
        for job in jobs {
            let result = self.run_together(std::slice::from_ref(&job)).await;
            let _ = job.done.send(result);
        }
    }

    async fn run_together(&self, jobs: &[Job]) -> Result<(), StorageError> {
        let tx = self.begin_writing().await?;
        // Jobs come sorted by organization: each organization's units run
        // under its setting, then its events go in with one INSERT, before
        // the setting moves on (row-level security checks every event row
        // against it).
        let mut start = 0;
        while start < jobs.len() {
            let org = jobs[start].org;
            let end = jobs[start..]
                .iter()
                .position(|j| j.org != org)
                .map_or(jobs.len(), |n| start + n);
            self.set_tenant(&tx, org).await?;
            let mut events = Vec::new();
            for job in &jobs[start..end] {
                events.extend((job.unit)(&tx).await?);
            }
            crate::audit::append(&tx, &events).await?;
            start = end;
        }
        tx.commit().await.map_err(super::storage_error)
    }
}

fn settle<T>(
    result: Result<Result<(), StorageError>, oneshot::error::RecvError>,
    slot: &Mutex<Option<T>>,
) -> Result<T, StorageError> {
    result.map_err(|_| StorageError::Unavailable("the transaction was abandoned".into()))??;
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| StorageError::Internal("a committed unit left no result".into()))
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement};

    use super::*;
    use crate::DbSettings;

    /// A unit that runs `sql` and reports whether it worked.
    fn unit(
        sql: &'static str,
    ) -> impl for<'a> Fn(&'a DatabaseTransaction) -> UnitFuture<'a, Audited<u64>> + Send + Sync + 'static
    {
        move |tx| {
            Box::pin(async move {
                tx.execute_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
                    .map(|r| (r.rows_affected(), Vec::new()))
                    .map_err(crate::db::storage_error)
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_unit_fails_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = format!("sqlite://{}/group.db", dir.path().display());
        let mut settings = DbSettings::new(url.into());
        // One shared transaction at a time, so concurrent units queue.
        settings.pool_max = 3;
        let db = Database::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.conn()
            .execute_unprepared("CREATE TABLE t (n integer)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let org = OrgId::generate();
        let mut tasks = Vec::new();
        for i in 0..24 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let sql = if i == 7 {
                    "INSERT INTO no_such_table VALUES (1)"
                } else {
                    "INSERT INTO t VALUES (1)"
                };
                db.grouped(org, unit(sql)).await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            match t.await.unwrap_or_else(|e| panic!("{e}")) {
                Ok(rows) => assert_eq!(rows, 1),
                Err(_) => failed += 1,
            }
        }
        assert_eq!(failed, 1, "only the broken unit fails");
        let count = db
            .conn()
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT count(*) AS n FROM t",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .and_then(|r| r.try_get::<i64>("", "n").ok());
        assert_eq!(count, Some(23), "every other unit committed exactly once");
    }
}
