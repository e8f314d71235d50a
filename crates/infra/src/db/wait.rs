//! One request's budget for waiting on database connections.
//!
//! The pool bounds each wait for a connection by its acquire timeout, but
//! one request waits several times: the session check, the organization
//! directory, key lookups, its turn in a shared transaction (ADR 0010), its
//! audit and security events. When the database is gone every one of those
//! waits runs to the timeout, and a request with a 2 s acquire timeout
//! answered after 8 s. So the waits of one request share one budget, the
//! acquire timeout: the server runs each request inside
//! [`Database::with_wait_budget`], every wait for a connection spends from
//! it ([`bounded`], and the queue of [`super::group`]), and a wait that
//! would outlast what is left ends at once as
//! [`StorageError::Unavailable`]. Whatever the number of steps, a request
//! that cannot get a connection answers 503 within the acquire timeout.
//!
//! Outside a request (commands, background jobs) there is no budget and
//! each wait is bounded by the pool alone.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

use carapace_tenancy::StorageError;
use sea_orm::DbErr;

use super::{Database, storage_error};

tokio::task_local! {
    /// What is left of the running request's budget.
    static LEFT: Cell<Duration>;
}

/// What is left of this task's budget; `None` outside a request.
pub(crate) fn left() -> Option<Duration> {
    LEFT.try_with(Cell::get).ok()
}

/// Takes `waited` off this task's budget.
pub(crate) fn spend(waited: Duration) {
    let _ = LEFT.try_with(|left| left.set(left.get().saturating_sub(waited)));
}

/// The budget ran out before a connection was had.
#[derive(Debug, thiserror::Error)]
#[error("no database connection within the request's wait budget")]
pub(crate) struct BudgetSpent;

/// The error of a wait that ran out of budget.
pub(crate) fn spent() -> StorageError {
    StorageError::Unavailable(Box::new(BudgetSpent))
}

/// Runs `wait`, a call that begins by waiting for a connection (`begin`,
/// or one statement on the pool), within what is left of the budget, and
/// spends the time it took.
pub(crate) async fn bounded<T>(
    wait: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, StorageError> {
    let Some(left) = left() else {
        return wait.await.map_err(storage_error);
    };
    let started = Instant::now();
    let out = tokio::time::timeout(left, wait).await;
    spend(started.elapsed());
    match out {
        Ok(result) => result.map_err(storage_error),
        Err(_) => Err(spent()),
    }
}

impl Database {
    /// Runs `request` with a budget of one acquire timeout for all its
    /// waits for a connection (see the module's documentation).
    pub async fn with_wait_budget<F: Future>(&self, request: F) -> F::Output {
        LEFT.scope(Cell::new(self.acquire_timeout()), request).await
    }

    /// How long one wait for a pooled connection may last.
    pub fn acquire_timeout(&self) -> Duration {
        match self.backend {
            super::Backend::Postgres => self
                .conn
                .get_postgres_connection_pool()
                .options()
                .get_acquire_timeout(),
            super::Backend::Sqlite => self
                .conn
                .get_sqlite_connection_pool()
                .options()
                .get_acquire_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_share_one_budget() {
        assert_eq!(left(), None, "no budget outside a request");
        let outcome = LEFT
            .scope(Cell::new(Duration::from_millis(300)), async {
                let slow = async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, DbErr>(1)
                };
                let first = bounded(slow).await;
                let left_after = left();
                let started = Instant::now();
                let again = bounded(async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<_, DbErr>(2)
                })
                .await;
                (first.ok(), left_after, started.elapsed(), again.is_err())
            })
            .await;
        assert_eq!(outcome.0, Some(1));
        assert!(outcome.1.is_some_and(|l| l <= Duration::from_millis(100)));
        assert!(
            outcome.2 < Duration::from_millis(400),
            "the second wait gets only what is left: {:?}",
            outcome.2
        );
        assert!(outcome.3, "and then fails as unavailable");
    }
}
