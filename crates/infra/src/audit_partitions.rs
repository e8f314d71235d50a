//! The monthly partitions of `audit_events` on PostgreSQL (migration
//! m0027, docs/adr/0008-audit-trail.md "Partitions"): creating the months
//! ahead ([`add_partitions`], by the server's `audit.partitions` job at
//! start-up and every hour), listing them ([`partitions`]), and dropping
//! old months that retention has emptied ([`drop_empty_before`]). SQLite
//! has one unpartitioned table; every function here does nothing there.
//!
//! The server's role owns nothing, so it cannot create a partition itself:
//! it calls `audit_events_add_partitions()`, a `SECURITY DEFINER` function
//! the migration created (owned by the schema owner), which takes no
//! argument and creates only the current month and the next three by a
//! fixed naming rule (`audit_events_pYYYYMM`). Dropping is for the owner
//! alone (the retention command runs as the owner).

use std::time::Duration;

use carapace_tenancy::StorageError;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, TransactionTrait as _};
use time::{Date, Month, OffsetDateTime, Time};

use crate::db::{Backend, Database, storage_error};

/// How often the server makes sure the months ahead exist.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// What the partitions' names start with; the month follows as `YYYYMM`.
const PREFIX: &str = "audit_events_p";

/// One monthly partition of `audit_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthPartition {
    /// Its table name (`audit_events_pYYYYMM`).
    pub name: String,
    /// The first instant it holds (the month's first day, 00:00 UTC).
    pub from: OffsetDateTime,
    /// The first instant it no longer holds (the next month's first day).
    pub to: OffsetDateTime,
}

impl MonthPartition {
    /// The partition named `name`, if it follows the naming rule.
    fn parse(name: &str) -> Option<Self> {
        let digits = name.strip_prefix(PREFIX)?;
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i32 = digits.get(..4)?.parse().ok()?;
        let month = Month::try_from(digits.get(4..)?.parse::<u8>().ok()?).ok()?;
        let first = Date::from_calendar_date(year, month, 1).ok()?;
        let next = match month {
            Month::December => Date::from_calendar_date(year + 1, Month::January, 1).ok()?,
            m => Date::from_calendar_date(year, m.next(), 1).ok()?,
        };
        Some(Self {
            name: name.to_owned(),
            from: first.with_time(Time::MIDNIGHT).assume_utc(),
            to: next.with_time(Time::MIDNIGHT).assume_utc(),
        })
    }
}

/// Creates the partitions of the current month and the next three that
/// are missing; returns how many it created (0 when they all exist, and
/// always on SQLite). Safe to call any number of times, from any number of
/// servers at once (the function takes an advisory lock).
pub async fn add_partitions(db: &Database) -> Result<u64, StorageError> {
    if db.backend() != Backend::Postgres {
        return Ok(0);
    }
    let created = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT audit_events_add_partitions() AS n",
        ))
        .await
        .map_err(storage_error)?
        .and_then(|r| r.try_get::<i32>("", "n").ok())
        .unwrap_or(0);
    Ok(u64::try_from(created).unwrap_or(0))
}

/// The monthly partitions of `audit_events`, oldest first (none on
/// SQLite; the default partition is not listed).
pub async fn partitions(db: &Database) -> Result<Vec<MonthPartition>, StorageError> {
    if db.backend() != Backend::Postgres {
        return Ok(Vec::new());
    }
    let rows = db
        .conn()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname::text AS name FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'audit_events'::regclass
             ORDER BY c.relname",
        ))
        .await
        .map_err(storage_error)?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get("", "name").map_err(storage_error)?;
        out.extend(MonthPartition::parse(&name));
    }
    Ok(out)
}

/// Owner only (`owner_db` connects as the schema owner): detaches and
/// drops every monthly partition that ends at or before `before` and holds
/// no row, whichever organization; returns their names.
///
/// Retention removes events row by row, per organization, each removal
/// covered by an archive and a signed tombstone (`audit purge`): a month
/// holds events of every organization, each with its own chain and its
/// own purge, so a whole month is never dropped while it holds anything.
/// Once every organization's events of a month are archived and removed,
/// the empty partition goes too. Each partition is checked and dropped in
/// its own transaction holding the parent's lock, so no event can land in
/// it in between (a late event of that month would land in the default
/// partition afterwards).
pub async fn drop_empty_before(
    owner_db: &Database,
    before: OffsetDateTime,
) -> Result<Vec<String>, StorageError> {
    let mut dropped = Vec::new();
    for p in partitions(owner_db).await? {
        if p.to > before {
            continue;
        }
        let tx = owner_db.conn().begin().await.map_err(storage_error)?;
        // The parent first (as every insert and query does), then the
        // partition: row-level security is forced on it for the owner too,
        // so it is lifted for this transaction to see every organization's
        // rows (undone by the rollback when the partition is not empty).
        tx.execute_unprepared(&format!(
            "LOCK TABLE ONLY audit_events IN ACCESS EXCLUSIVE MODE;
             ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY;",
            name = p.name
        ))
        .await
        .map_err(storage_error)?;
        let occupied = tx
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {name}) AS occupied",
                    name = p.name
                ),
            ))
            .await
            .map_err(storage_error)?
            .and_then(|r| r.try_get::<bool>("", "occupied").ok())
            .unwrap_or(true);
        if occupied {
            tx.rollback().await.map_err(storage_error)?;
            continue;
        }
        tx.execute_unprepared(&format!(
            "ALTER TABLE audit_events DETACH PARTITION {name}; DROP TABLE {name};",
            name = p.name
        ))
        .await
        .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        dropped.push(p.name);
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::MonthPartition;
    use time::macros::datetime;

    #[test]
    fn names_follow_the_rule() {
        let p = MonthPartition::parse("audit_events_p202612").unwrap_or_else(|| unreachable!());
        assert_eq!(p.from, datetime!(2026-12-01 0:00 UTC));
        assert_eq!(p.to, datetime!(2027-01-01 0:00 UTC));
        for bad in [
            "audit_events_default",
            "audit_events_p2026",
            "audit_events_p202613",
            "audit_events_p20261x",
            "audit_events",
        ] {
            assert_eq!(MonthPartition::parse(bad), None, "{bad}");
        }
    }
}
