//! Migrating while other processes may be migrating too.
//!
//! Instances, `carapace migrate` runs and CLI commands may all start at
//! once against a fresh database (the README's walkthrough runs `carapace
//! serve` and `carapace org create` side by side). Unserialized, each saw
//! the same pending migrations and all but one failed half-way (`table
//! organizations already exists`, a unique violation in the migration
//! table). So one process migrates at a time, and does all its work in one
//! transaction that holds the lock:
//!
//! - PostgreSQL: a transaction-scoped advisory lock on a fixed key, taken
//!   first in the transaction (released by COMMIT, ROLLBACK or a dying
//!   connection); each migration runs in a savepoint of it;
//! - SQLite: an immediate transaction, i.e. the database's single write
//!   lock, held from BEGIN to COMMIT (SQLite's DDL is transactional).
//!
//! The others wait for the lock (polling, so neither the statement timeout
//! nor SQLite's `busy_timeout` cuts the wait short; at most
//! [`MIGRATION_WAIT`]), then find nothing pending and commit nothing.
//! Either every pending migration is applied or none is.

use std::time::{Duration, Instant};

use carapace_migrations::{Migrator, MigratorTrait};
use carapace_tenancy::StorageError;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait};

use super::errors::is_sqlite_busy;
use super::{Backend, Database, storage_error};

/// The longest a process waits for another one's migrations.
const MIGRATION_WAIT: Duration = Duration::from_secs(600);
/// How often a waiting process tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// The advisory lock's key: the namespace of [`Database::exclusively`]'s
/// job locks, and a key no job name hashes to by design.
const LOCK: (i32, i32) = (1_633_906_018, 0);

impl Database {
    /// Applies pending migrations, one process at a time: it waits for any
    /// other process that is migrating (a PostgreSQL advisory lock, SQLite's
    /// write lock), then applies whatever is still pending in one
    /// transaction. On PostgreSQL this must run as the schema owner, never
    /// as the server's role.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let tx = self.begin_migration().await?;
        Migrator::up(&tx, None).await.map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)
    }

    /// A transaction that holds the migration lock.
    async fn begin_migration(&self) -> Result<DatabaseTransaction, StorageError> {
        let started = Instant::now();
        let mut told = false;
        loop {
            if let Some(tx) = self.try_migration_lock().await? {
                return Ok(tx);
            }
            if !told {
                tracing::info!("another process is migrating the database; waiting for it");
                told = true;
            }
            if started.elapsed() > MIGRATION_WAIT {
                return Err(StorageError::Unavailable(
                    "another process held the migration lock for too long".into(),
                ));
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// The migration lock in a new transaction, or `None` while another
    /// process holds it.
    async fn try_migration_lock(&self) -> Result<Option<DatabaseTransaction>, StorageError> {
        match self.backend {
            Backend::Postgres => {
                let tx = self.conn.begin().await.map_err(storage_error)?;
                let got = tx
                    .query_one_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_try_advisory_xact_lock($1, $2) AS got",
                        [LOCK.0.into(), LOCK.1.into()],
                    ))
                    .await
                    .map_err(storage_error)?
                    .and_then(|r| r.try_get::<bool>("", "got").ok())
                    .unwrap_or(false);
                Ok(got.then_some(tx))
            }
            Backend::Sqlite => match self
                .conn
                .begin_with_options(sea_orm::TransactionOptions {
                    isolation_level: None,
                    access_mode: None,
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                })
                .await
            {
                Ok(tx) => Ok(Some(tx)),
                // Another process holds the write lock past busy_timeout.
                Err(e) if is_sqlite_busy(&e) => Ok(None),
                Err(e) => Err(storage_error(e)),
            },
        }
    }
}
