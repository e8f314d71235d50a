//! Database errors as the ports' errors: which mean the database is out
//! of reach (503), which are constraint violations, which are bugs.

use carapace_tenancy::StorageError;
use sea_orm::{DbErr, SqlErr};

/// Whether `err` is the database refusing overlapping booked appointments
/// (PostgreSQL's exclusion constraint, SQSTATE 23P01, or SQLite's trigger).
pub(crate) fn is_overlap(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    if let DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) = err
        && let sea_orm::sqlx::Error::Database(d) = e.as_ref()
    {
        return d.code().as_deref() == Some("23P01")
            || d.message().contains(carapace_migrations::SQLITE_OVERLAP);
    }
    false
}

/// Whether `err` is PostgreSQL ending a deadlock (`40P01`). Two
/// transactions inserting overlapping rows under an exclusion constraint
/// each wait for the other's row: one of them is chosen to fail, and its
/// row overlapped the other's.
pub(crate) fn is_deadlock(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    if let DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) = err
        && let sea_orm::sqlx::Error::Database(d) = e.as_ref()
    {
        return d.code().as_deref() == Some("40P01");
    }
    false
}

/// Maps a database error to the port's error. Constraint violations drop
/// the driver's message: it can quote row values (PHI). Every way of
/// losing the database ([`is_unavailable`]) is `Unavailable`, whatever
/// statement it interrupted; the cause is kept for the log only.
pub(crate) fn storage_error(err: DbErr) -> StorageError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            return StorageError::Constraint("unique constraint violated".into());
        }
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
            return StorageError::Constraint("foreign key constraint violated".into());
        }
        _ => {}
    }
    if is_unavailable(&err) {
        StorageError::Unavailable(Box::new(err))
    } else {
        StorageError::Internal(Box::new(err))
    }
}

/// Whether `err` means the database cannot be reached or used right now,
/// rather than that the statement was wrong: no connection to be had (pool
/// timed out or closed, connect failed), a connection lost under a
/// statement (reset, closed, broken pipe, a protocol stream cut short, the
/// SQLite worker gone), or the server saying it is going away, full, or
/// out of time (PostgreSQL classes 08 and 53, 57P01-57P05 shutdown and
/// recovery, 57014 statement timeout; SQLite busy past its timeout).
pub(crate) fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_unavailable(e)
        }
        _ => false,
    }
}

fn sqlx_unavailable(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match err {
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => true,
        Error::Database(d) => {
            let Some(code) = d.code() else {
                return false;
            };
            if d.try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                pg_unavailable(&code)
            } else if d
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                sqlite_busy(&code)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// SQLite's `SQLITE_BUSY`: the lock was not had within `busy_timeout`.
const SQLITE_BUSY: i32 = 5;

/// Whether a SQLite result code (extended: the primary code is its low
/// byte) is `SQLITE_BUSY`.
fn sqlite_busy(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| c & 0xff == SQLITE_BUSY)
}

/// Whether `err` is SQLite giving up on a lock another process holds.
pub(crate) fn is_sqlite_busy(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    let (DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    match e.as_ref() {
        sea_orm::sqlx::Error::Database(d) => {
            d.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
                && d.code().is_some_and(|c| sqlite_busy(&c))
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs of a server that cannot serve now.
fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections …)
        || matches!(
            code,
            "57014" // query_canceled: the statement timeout
            | "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now (starting, recovering)
            | "57P04" // database_dropped
            | "57P05" // idle_session_timeout
        )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error;

    use super::*;

    fn exec(e: Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
    }

    #[test]
    fn every_way_of_losing_the_database_is_unavailable() {
        let io = |kind| exec(Error::Io(std::io::Error::from(kind)));
        let lost = [
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::BrokenPipe),
            io(std::io::ErrorKind::UnexpectedEof),
            io(std::io::ErrorKind::ConnectionAborted),
            exec(Error::Protocol("unexpected end of stream".into())),
            exec(Error::PoolTimedOut),
            exec(Error::PoolClosed),
            exec(Error::WorkerCrashed),
            DbErr::Query(RuntimeErr::SqlxError(Arc::new(Error::PoolTimedOut))),
            DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
            DbErr::Conn(RuntimeErr::Internal("connection refused".into())),
        ];
        for err in lost {
            let shown = format!("{err:?}");
            assert_eq!(storage_error(err).code(), "storage_unavailable", "{shown}");
        }
        let wrong = [
            exec(Error::RowNotFound),
            exec(Error::ColumnNotFound("x".into())),
            DbErr::Custom("x".into()),
            DbErr::RecordNotFound("x".into()),
        ];
        for err in wrong {
            let shown = format!("{err:?}");
            assert_eq!(storage_error(err).code(), "storage_failure", "{shown}");
        }
    }

    #[test]
    fn postgres_states_of_a_server_that_cannot_serve() {
        for code in ["08006", "08003", "53300", "57014", "57P01", "57P03"] {
            assert!(pg_unavailable(code), "{code}");
        }
        for code in ["23505", "42501", "22001", "40001", "42P01"] {
            assert!(!pg_unavailable(code), "{code}");
        }
    }
}
