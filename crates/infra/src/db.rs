//! Connecting, migrating, checking readiness and posture, and running
//! tenant work inside one transaction that carries the tenant setting.

mod errors;
mod group;
mod migrate;
mod posture;
mod run;
pub(crate) mod wait;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use carapace_migrations::{Migrator, MigratorTrait};
use carapace_tenancy::{OrgId, StorageError, TenantContext};
use sea_orm::sqlx::postgres::PgSslMode;
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    Statement, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub(crate) use errors::{is_deadlock, is_overlap, storage_error};
pub(crate) use group::{Audited, UnitFuture};
pub use posture::PostureProblem;
pub(crate) use run::{Fetch, Run, insert_all};

/// Which database engine a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: row-level security enforces tenancy.
    Postgres,
    /// Embedded SQLite: for development and single-node trials.
    Sqlite,
}

impl Backend {
    /// The backend of a database URL, if it is one Carapace supports.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// TLS to PostgreSQL, as libpq names the modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never use TLS.
    Disable,
    /// Use TLS if the server offers it.
    Prefer,
    /// Require TLS, without checking the certificate.
    Require,
    /// Require TLS and a certificate signed by a trusted CA.
    VerifyCa,
    /// Require TLS, a trusted certificate, and a matching host name.
    VerifyFull,
}

impl TlsMode {
    /// Whether the mode guarantees an encrypted connection to the server
    /// named in the URL: `verify-full` only. `require` checks no
    /// certificate and `verify-ca` no host name, so a man in the middle
    /// holding any certificate (under `verify-ca`, any one the same CA
    /// signed: with a cloud provider's bundle, any other customer's
    /// database) reads and changes the traffic.
    pub fn authenticates_server(self) -> bool {
        matches!(self, Self::VerifyFull)
    }

    fn to_sqlx(self) -> PgSslMode {
        match self {
            Self::Disable => PgSslMode::Disable,
            Self::Prefer => PgSslMode::Prefer,
            Self::Require => PgSslMode::Require,
            Self::VerifyCa => PgSslMode::VerifyCa,
            Self::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct DbSettings {
    /// `postgres://…` or `sqlite://…` (may hold a password).
    pub url: SecretString,
    /// Largest pool size.
    pub pool_max: u32,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time a request may wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// Longest time one statement may run (PostgreSQL).
    pub statement_timeout: Duration,
    /// TLS mode (PostgreSQL).
    pub tls: TlsMode,
    /// Most transactions shared by audited calls at once (group commit,
    /// ADR 0010); 0: twice the CPUs. Never more than `pool_max − 2`.
    pub group_workers: u32,
}

impl DbSettings {
    /// Settings with defaults for `url`.
    pub fn new(url: SecretString) -> Self {
        Self {
            url,
            pool_max: 10,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
            tls: TlsMode::Prefer,
            group_workers: 0,
        }
    }
}

/// A pool of connections to Carapace's database.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
    backend: Backend,
    group: Arc<group::GroupCommit>,
}

impl Database {
    /// Opens a pool. For SQLite the file's directory is created, and WAL
    /// and foreign keys are switched on.
    pub async fn connect(settings: &DbSettings) -> Result<Self, StorageError> {
        let url = settings.url.expose_secret();
        let backend = Backend::of_url(url)
            .ok_or_else(|| StorageError::Internal("unsupported database URL scheme".into()))?;
        if backend == Backend::Sqlite {
            ensure_sqlite_dir(url)?;
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(settings.pool_max)
            .min_connections(0)
            .connect_timeout(settings.connect_timeout)
            .acquire_timeout(settings.acquire_timeout)
            .sqlx_logging(false);
        match backend {
            Backend::Postgres => {
                let tls = settings.tls.to_sqlx();
                opts.statement_timeout(settings.statement_timeout)
                    .set_application_name("carapace")
                    .map_sqlx_postgres_opts(move |o| o.ssl_mode(tls));
            }
            Backend::Sqlite => {
                opts.map_sqlx_sqlite_opts(|o| {
                    o.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .foreign_keys(true)
                        .busy_timeout(Duration::from_secs(5))
                });
            }
        }
        let conn = sea_orm::Database::connect(opts)
            .await
            .map_err(storage_error)?;
        // Few transactions at once, each shared by whatever waits: the
        // database commits more per second that way than with one
        // transaction per connection (measured: docs/performance.md). Two
        // connections stay free of shared transactions for everything else
        // (key lookups, the directory, the audit chainer).
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let wanted = match settings.group_workers {
            0 => 2 * cpus,
            n => usize::try_from(n).unwrap_or(1),
        };
        let room = usize::try_from(settings.pool_max.saturating_sub(2)).unwrap_or(1);
        let workers = wanted.min(room).max(1);
        Ok(Self::assemble(conn, backend, workers))
    }

    fn assemble(conn: DatabaseConnection, backend: Backend, workers: usize) -> Self {
        let group = Arc::new(group::GroupCommit::new(workers, group::MAX_BATCH));
        Self {
            conn,
            backend,
            group,
        }
    }

    /// Wraps an existing pool (tests use this to share a one-connection
    /// pool between a repository and raw checks of what it left behind).
    pub fn from_connection(conn: DatabaseConnection) -> Option<Self> {
        let backend = match conn.get_database_backend() {
            DbBackend::Postgres => Backend::Postgres,
            DbBackend::Sqlite => Backend::Sqlite,
            _ => return None,
        };
        Some(Self::assemble(conn, backend, 1))
    }

    /// The engine behind this pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Names of migrations this binary knows but the database lacks.
    /// Never creates anything, so the server's role may call it.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StorageError> {
        let pending = Migrator::get_pending_migrations_read_only(&self.conn)
            .await
            .map_err(storage_error)?;
        Ok(pending.iter().map(|m| m.name().to_owned()).collect())
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.conn.ping().await.map_err(storage_error)
    }

    /// What is wrong with the connected role's security posture (empty when
    /// it is sound). Always empty on SQLite, which has no roles.
    pub async fn posture_problems(&self) -> Result<Vec<PostureProblem>, StorageError> {
        match self.backend {
            Backend::Postgres => posture::check(&self.conn).await,
            Backend::Sqlite => Ok(Vec::new()),
        }
    }

    /// Closes the pool.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }

    /// Begins a transaction for `ctx`'s organization. On PostgreSQL its first
    /// statement sets `app.org_id` for this transaction only (`set_config(…,
    /// true)`, i.e. `SET LOCAL`), so row-level security confines every
    /// statement in it and nothing survives into the pooled connection.
    pub(crate) async fn begin_tenant(
        &self,
        ctx: &TenantContext,
    ) -> Result<DatabaseTransaction, StorageError> {
        self.begin_tenant_as(ctx, true).await
    }

    /// Like [`Self::begin_tenant`] for a transaction that only reads: on
    /// SQLite it takes no write lock, so it can run beside a writing one
    /// (key lookups in the middle of a re-encryption).
    pub(crate) async fn begin_tenant_read(
        &self,
        ctx: &TenantContext,
    ) -> Result<DatabaseTransaction, StorageError> {
        self.begin_tenant_as(ctx, false).await
    }

    async fn begin_tenant_as(
        &self,
        ctx: &TenantContext,
        writes: bool,
    ) -> Result<DatabaseTransaction, StorageError> {
        let tx = if writes {
            self.begin_writing().await?
        } else {
            wait::bounded(self.conn.begin()).await?
        };
        self.set_tenant(&tx, ctx.org()).await?;
        Ok(tx)
    }

    /// Begins a transaction that will write. Reads write their audit
    /// event: on SQLite this takes the single write lock at BEGIN (waiting
    /// on busy_timeout) rather than fail to upgrade a read midway.
    /// The wait for the connection (and, on SQLite, the write lock) spends
    /// from the request's budget ([`wait`]).
    pub(crate) async fn begin_writing(&self) -> Result<DatabaseTransaction, StorageError> {
        wait::bounded(self.begin_writing_unbounded()).await
    }

    /// [`Self::begin_writing`] bounded by the pool alone.
    async fn begin_writing_unbounded(&self) -> Result<DatabaseTransaction, DbErr> {
        match self.backend {
            Backend::Sqlite => {
                self.conn
                    .begin_with_options(sea_orm::TransactionOptions {
                        isolation_level: None,
                        access_mode: None,
                        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                    })
                    .await
            }
            Backend::Postgres => self.conn.begin().await,
        }
    }

    /// Confines the rest of `tx` to `org` (PostgreSQL; SQLite relies on the
    /// repositories' `org_id` filters alone).
    pub(crate) async fn set_tenant(
        &self,
        tx: &DatabaseTransaction,
        org: OrgId,
    ) -> Result<(), StorageError> {
        if self.backend == Backend::Postgres {
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config('app.org_id', $1, true)",
                [org.to_string().into()],
            ))
            .await
            .map_err(storage_error)?;
        }
        Ok(())
    }

    /// Runs `work` only if no other instance is running the job named `job`
    /// right now, and returns its output; `None` when another instance has
    /// it. On PostgreSQL the leader holds a transaction-scoped advisory lock
    /// on the job's name for as long as `work` runs (released at its end,
    /// or when the connection dies with its instance); SQLite serves one
    /// instance, which always runs it.
    pub async fn exclusively<T, F>(&self, job: &str, work: F) -> Result<Option<T>, StorageError>
    where
        F: std::future::Future<Output = T>,
    {
        if self.backend == Backend::Sqlite {
            return Ok(Some(work.await));
        }
        let tx = wait::bounded(self.conn.begin()).await?;
        let got = tx
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock(1633906018, hashtext($1)) AS got",
                [job.into()],
            ))
            .await
            .map_err(storage_error)?
            .and_then(|r| r.try_get::<bool>("", "got").ok())
            .unwrap_or(false);
        if !got {
            return Ok(None);
        }
        let out = work.await;
        tx.commit().await.map_err(storage_error)?;
        Ok(Some(out))
    }

    /// Open and idle connections in the pool (metrics).
    pub fn pool_stats(&self) -> (u32, u32) {
        match self.backend {
            Backend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (
                    pool.size(),
                    u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                )
            }
            Backend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (
                    pool.size(),
                    u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                )
            }
        }
    }

    /// The pool for work that is not tenant-scoped (the organization directory).
    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// `pg` with `$n` placeholders, or `?` ones for SQLite.
pub(crate) fn statement(backend: DbBackend, pg: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        pg.to_owned()
    } else {
        let mut out = String::with_capacity(pg.len());
        let mut chars = pg.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out
    };
    Statement::from_sql_and_values(backend, sql, values)
}

fn ensure_sqlite_dir(url: &str) -> Result<(), StorageError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
            // The database holds PHI: its directory is private to the owner.
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| StorageError::Unavailable(Box::new(e)))
        }
        _ => Ok(()),
    }
}
