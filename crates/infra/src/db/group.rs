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
//!
//! No wait multiplies: a caller waits for its unit to be taken only as long
//! as its request's wait budget allows ([`super::wait`]) and then withdraws
//! it; a transaction that cannot get a connection fails all its units at
//! once instead of retrying each; and when the database goes away during
//! the one-by-one runs, the units still to run fail at once.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use carapace_audit::AuditEvent;
use carapace_tenancy::{OrgId, StorageError};
use sea_orm::DatabaseTransaction;
use tokio::sync::{Semaphore, oneshot};

use super::{Database, wait};

mod ticket;

use ticket::Ticket;

/// What a unit of work returns: its statements' future on the transaction.
pub(crate) type UnitFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A unit's result and the audit events that must commit with it.
pub(crate) type Audited<T> = (T, Vec<AuditEvent>);

type Unit =
    Box<dyn for<'a> Fn(&'a DatabaseTransaction) -> UnitFuture<'a, Vec<AuditEvent>> + Send + Sync>;

/// Writes audit events in a transaction: the audit log's append, supplied
/// by the caller, so this room knows nothing of how events are stored.
pub(crate) type Append =
    for<'a> fn(&'a DatabaseTransaction, &'a [AuditEvent]) -> UnitFuture<'a, ()>;

struct Job {
    org: OrgId,
    unit: Unit,
    append: Append,
    done: oneshot::Sender<Result<(), StorageError>>,
    ticket: Arc<Ticket>,
}

/// Units of tenant work waiting to share a commit.
pub(crate) struct GroupCommit {
    queue: Mutex<VecDeque<Job>>,
    permits: Arc<Semaphore>,
    max_batch: usize,
    /// The runtime the pool was opened on, where shared transactions run.
    home: Option<tokio::runtime::Handle>,
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
            home: tokio::runtime::Handle::try_current().ok(),
        }
    }

    fn take(&self) -> Vec<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        // Units whose callers gave up are dropped on the way.
        queue.retain(|j| !j.ticket.withdrawn());
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

/// A shared transaction failed for every unit in it (it could not begin,
/// or the database went away); each unit's caller gets its own copy.
#[derive(Debug, thiserror::Error)]
#[error("shared transaction failed: {0}")]
struct SharedFailure(String);

/// `err` for one more caller: the same class, the cause as text (logs only).
fn copy_of(err: &StorageError) -> StorageError {
    let mut chain = String::new();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(c) = cause {
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&c.to_string());
        cause = c.source();
    }
    let failure = Box::new(SharedFailure(chain));
    match err {
        StorageError::Unavailable(_) => StorageError::Unavailable(failure),
        _ => StorageError::Internal(failure),
    }
}

impl Database {
    /// Runs `unit` for `org` in a transaction that may be shared with other
    /// organizations' units, writes the audit events it returns in that
    /// same transaction with `append` (once per organization's units: every
    /// caller passes the audit log's one append), and returns
    /// its result once the transaction has committed. The transaction
    /// already carries `org`'s tenant setting when `unit` starts; `unit`
    /// may be run more than once (after a shared transaction failed), so it
    /// must only touch the transaction.
    ///
    /// Waiting for a transaction to take the unit spends from the request's
    /// wait budget ([`wait`]; outside a request, one acquire timeout): when
    /// it runs out first, the unit is withdrawn (it never runs) and the
    /// call fails as [`StorageError::Unavailable`].
    pub(crate) async fn grouped<T, F>(
        &self,
        org: OrgId,
        append: Append,
        unit: F,
    ) -> Result<T, StorageError>
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
        let budget = wait::left().unwrap_or_else(|| self.acquire_timeout());
        let ticket = Arc::new(Ticket::new(budget));
        let (done, mut finished) = oneshot::channel();
        let group = &self.group;
        group.push(Job {
            org,
            unit,
            append,
            done,
            ticket: ticket.clone(),
        });
        let give_up = tokio::time::sleep_until(ticket.deadline.into());
        tokio::pin!(give_up);
        let mut leading = true;
        let result = loop {
            tokio::select! {
                biased;
                result = &mut finished => break result,
                () = &mut give_up => {
                    if ticket.withdraw() {
                        wait::spend(budget);
                        return Err(wait::spent());
                    }
                    // Taken: it has its connection; stay for the outcome.
                    break (&mut finished).await;
                }
                permit = group.permits.clone().acquire_owned(), if leading => {
                    let permit = permit.map_err(|_| StorageError::Internal("group commit closed".into()))?;
                    let jobs = group.take();
                    if jobs.is_empty() {
                        // Ours is already in somebody's transaction.
                        drop(permit);
                        leading = false;
                        continue;
                    }
                    let db = self.clone();
                    // Spawned so that a caller going away (a dropped request)
                    // never abandons the other units in the transaction; on
                    // the pool's home runtime, not the caller's: a
                    // connection's socket stays with the runtime that opened
                    // it (each HTTP worker has its own), so shared
                    // transactions opening and driving their connections on
                    // one runtime spare a thread hand-off per statement, and
                    // none of them dies with an HTTP worker's runtime when
                    // the server stops.
                    let run = async move {
                        db.run_jobs(jobs).await;
                        drop(permit);
                    };
                    match &group.home {
                        Some(home) => drop(home.spawn(run)),
                        None => drop(tokio::spawn(run)),
                    }
                }
            }
        };
        wait::spend(ticket.waited());
        settle(result, &slot)
    }

    /// Begins a transaction, waiting for a connection at most until
    /// `until` (nobody waits for it after that) and never longer than the
    /// pool's acquire timeout.
    async fn begin_until(&self, until: Instant) -> Result<DatabaseTransaction, StorageError> {
        match tokio::time::timeout_at(until.into(), self.begin_writing_unbounded()).await {
            Ok(begun) => begun.map_err(super::storage_error),
            Err(_) => Err(wait::spent()),
        }
    }

    async fn run_jobs(&self, mut jobs: Vec<Job>) {
        jobs.retain(|j| !j.ticket.withdrawn());
        let Some(until) = jobs.iter().map(|j| j.ticket.deadline).max() else {
            return;
        };
        // One organization's units next to each other share its setting.
        jobs.sort_by_key(|j| j.org.as_uuid());
        let tx = match self.begin_until(until).await {
            Ok(tx) => tx,
            Err(e) => {
                // No connection: no unit has run, and running them one by
                // one would only wait again, once per unit.
                return fail(jobs, e);
            }
        };
        if jobs.len() == 1 {
            let result = self.run_together(tx, &jobs).await;
            return finish(jobs, result.map_err(Failure::into_error));
        }
        match self.run_together(tx, &jobs).await {
            Ok(()) => return finish(jobs, Ok(())),
            // The COMMIT itself failed (the connection died on it, say): it
            // may have gone through. Running the units again could do each
            // twice, so they all fail instead, as the caller of a single
            // transaction would.
            Err(Failure::AtCommit(e)) => return fail(jobs, e),
            Err(Failure::Before(_)) => {}
        }
        // The shared transaction rolled back (nothing of any unit is kept):
        // each unit runs again in its own, so one unit's failure is only
        // its own.
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            if job.ticket.withdrawn() {
                continue;
            }
            // A unit that ran already has a caller waiting for its outcome;
            // one that never ran, a caller with a deadline.
            let until = if job.ticket.claimed() {
                Instant::now() + self.acquire_timeout()
            } else {
                job.ticket.deadline
            };
            match self.begin_until(until).await {
                Ok(tx) => {
                    let result = self.run_together(tx, std::slice::from_ref(&job)).await;
                    finish(vec![job], result.map_err(Failure::into_error));
                }
                Err(e) => {
                    // The database went away: the others would only wait
                    // for it one after another.
                    let rest: Vec<Job> = std::iter::once(job).chain(jobs).collect();
                    return fail(rest, e);
                }
            }
        }
    }

    /// Runs `jobs` (sorted by organization) in `tx` and commits. A unit
    /// whose caller withdrew it is skipped.
    async fn run_together(&self, tx: DatabaseTransaction, jobs: &[Job]) -> Result<(), Failure> {
        // Each organization's units run under its setting, then its events
        // go in with one INSERT, before the setting moves on (row-level
        // security checks every event row against it).
        let mut start = 0;
        while start < jobs.len() {
            let org = jobs[start].org;
            let end = jobs[start..]
                .iter()
                .position(|j| j.org != org)
                .map_or(jobs.len(), |n| start + n);
            self.set_tenant(&tx, org).await.map_err(Failure::Before)?;
            let mut events = Vec::new();
            for job in &jobs[start..end] {
                if job.ticket.claim() {
                    events.extend((job.unit)(&tx).await.map_err(Failure::Before)?);
                }
            }
            (jobs[start].append)(&tx, &events)
                .await
                .map_err(Failure::Before)?;
            start = end;
        }
        tx.commit()
            .await
            .map_err(|e| Failure::AtCommit(super::storage_error(e)))
    }
}

/// How a transaction of units failed.
enum Failure {
    /// Before COMMIT: rolled back, nothing of it is kept.
    Before(StorageError),
    /// The COMMIT failed: whether it went through is unknown.
    AtCommit(StorageError),
}

impl Failure {
    fn into_error(self) -> StorageError {
        match self {
            Self::Before(e) | Self::AtCommit(e) => e,
        }
    }
}

/// Tells each job that ran (or still waits) how its transaction ended.
fn finish(jobs: Vec<Job>, result: Result<(), StorageError>) {
    match result {
        Ok(()) => {
            for job in jobs {
                if job.ticket.claimed() {
                    let _ = job.done.send(Ok(()));
                }
            }
        }
        Err(e) => fail(jobs, e),
    }
}

/// Fails every job still waiting with `err` (each its own copy).
fn fail(jobs: Vec<Job>, err: StorageError) {
    let mut waiting: Vec<Job> = jobs.into_iter().filter(|j| !j.ticket.withdrawn()).collect();
    let last = waiting.pop();
    for job in waiting {
        let _ = job.done.send(Err(copy_of(&err)));
    }
    if let Some(job) = last {
        let _ = job.done.send(Err(err));
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
    use std::time::Duration;

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
                crate::repo::grouped(&db, org, unit(sql)).await
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_unit_that_gets_no_connection_within_the_budget_fails_fast_and_never_runs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = format!("sqlite://{}/group.db", dir.path().display());
        let mut settings = DbSettings::new(url.into());
        settings.pool_max = 3;
        settings.acquire_timeout = Duration::from_secs(1);
        let db = Database::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.conn()
            .execute_unprepared("CREATE TABLE t (n integer)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Somebody holds the write lock for longer than any budget.
        let holder = db.begin_writing().await.unwrap_or_else(|e| panic!("{e}"));
        let org = OrgId::generate();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let out = db
                    .with_wait_budget(crate::repo::grouped(
                        &db,
                        org,
                        unit("INSERT INTO t VALUES (1)"),
                    ))
                    .await;
                (out.err().map(|e| e.code()), started.elapsed())
            }));
        }
        for t in tasks {
            let (err, took) = t.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(err, Some("storage_unavailable"));
            assert!(
                took < Duration::from_millis(1800),
                "one budget, not one acquire timeout per queued unit: {took:?}"
            );
        }
        drop(holder);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let count = || async {
            db.conn()
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT count(*) AS n FROM t",
                ))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .and_then(|r| r.try_get::<i64>("", "n").ok())
        };
        assert_eq!(count().await, Some(0), "a unit that answered 503 never ran");
        let rows = db
            .with_wait_budget(crate::repo::grouped(
                &db,
                org,
                unit("INSERT INTO t VALUES (1)"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((rows, count().await), (1, Some(1)), "and the next one does");
    }
}
