//! The deployment's kill switch, kept in the database so that every
//! instance obeys it (each reads it every second). Each change is recorded
//! in every organization's audit trail in the same transaction: if that
//! fails, the switch does not move.

use carapace_audit::{Origin, SecurityEvent, SecurityEventKind};
use carapace_tenancy::{StorageError, SubjectId};
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, Value};
use time::OffsetDateTime;

use crate::db::{Backend, Database, storage_error};

/// Longest reason, in characters.
pub const REASON_MAX: usize = 500;

/// The switch as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KillSwitchState {
    /// On: everything but health, JWKS and the switch itself answers 503.
    pub engaged: bool,
    /// Why it was last changed.
    pub reason: Option<String>,
    /// Who last changed it.
    pub changed_by: Option<String>,
    /// When.
    pub changed_at: Option<OffsetDateTime>,
}

/// A change to make.
#[derive(Clone, Debug)]
pub struct KillSwitchChange {
    /// On or off.
    pub engaged: bool,
    /// Why (required to engage; at most [`REASON_MAX`] characters).
    pub reason: Option<String>,
    /// Who (a user's subject, or `system:cli`).
    pub by: SubjectId,
    /// From where.
    pub origin: Origin,
}

/// The switch in the database.
#[derive(Clone, Debug)]
pub struct SeaKillSwitch {
    db: Database,
}

fn stmt(db: &Database, sql: &str, values: Vec<Value>) -> Statement {
    let backend = match db.backend() {
        Backend::Postgres => DbBackend::Postgres,
        Backend::Sqlite => DbBackend::Sqlite,
    };
    let sql = if backend == DbBackend::Sqlite {
        sql.replace("$1", "?")
            .replace("$2", "?")
            .replace("$3", "?")
            .replace("$4", "?")
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

impl SeaKillSwitch {
    /// The switch in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The current state (off when never set).
    pub async fn status(&self) -> Result<KillSwitchState, StorageError> {
        let row = self
            .db
            .conn()
            .query_one_raw(stmt(
                &self.db,
                "SELECT engaged, reason, changed_by, changed_at FROM kill_switch WHERE id = 1",
                vec![],
            ))
            .await
            .map_err(storage_error)?;
        let Some(row) = row else {
            return Ok(KillSwitchState::default());
        };
        Ok(KillSwitchState {
            engaged: row.try_get("", "engaged").map_err(storage_error)?,
            reason: row.try_get("", "reason").map_err(storage_error)?,
            changed_by: row.try_get("", "changed_by").map_err(storage_error)?,
            changed_at: row.try_get("", "changed_at").map_err(storage_error)?,
        })
    }

    /// Sets the switch and records the change in every organization's
    /// audit trail, all in one transaction.
    pub async fn set(&self, change: &KillSwitchChange) -> Result<KillSwitchState, StorageError> {
        if change
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > REASON_MAX)
        {
            return Err(StorageError::Internal("kill-switch reason too long".into()));
        }
        let now = OffsetDateTime::now_utc();
        let tx = self.db.begin_writing().await?;
        tx.execute_raw(stmt(
            &self.db,
            "INSERT INTO kill_switch (id, engaged, reason, changed_by, changed_at)
             VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET engaged = EXCLUDED.engaged,
               reason = EXCLUDED.reason, changed_by = EXCLUDED.changed_by,
               changed_at = EXCLUDED.changed_at",
            vec![
                change.engaged.into(),
                change.reason.clone().into(),
                change.by.as_str().to_owned().into(),
                now.into(),
            ],
        ))
        .await
        .map_err(storage_error)?;
        let what = if change.engaged {
            "kill_switch.on"
        } else {
            "kill_switch.off"
        };
        for org in crate::organizations::every_org(&self.db).await? {
            self.db.set_tenant(&tx, org).await?;
            let mut event =
                SecurityEvent::new(SecurityEventKind::AdminAction, org, change.by.clone(), what);
            event.origin = change.origin.clone();
            crate::audit::append(&tx, &[event.to_audit_event()]).await?;
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(KillSwitchState {
            engaged: change.engaged,
            reason: change.reason.clone(),
            changed_by: Some(change.by.as_str().to_owned()),
            changed_at: Some(now),
        })
    }
}
