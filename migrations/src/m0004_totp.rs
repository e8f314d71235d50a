use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::tenant_table_sql;

/// TOTP enrolment on users (seed sealed, last used step for replay
/// protection) and single-use recovery codes (SHA-256 only).
const STATEMENTS: &[&str] = &[
    "ALTER TABLE users ADD COLUMN totp_seed bytea",
    "ALTER TABLE users ADD COLUMN totp_enabled boolean NOT NULL DEFAULT false",
    "ALTER TABLE users ADD COLUMN totp_last_step bigint",
    "CREATE TABLE recovery_codes (
        org_id     uuid        NOT NULL,
        hash       bytea       NOT NULL,
        user_id    uuid        NOT NULL,
        used_at    timestamptz,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (org_id, user_id, hash),
        FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id) ON DELETE CASCADE
    )",
];

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in STATEMENTS {
        db.execute_unprepared(statement).await?;
    }
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(&tenant_table_sql("recovery_codes"))
            .await?;
    }
    Ok(())
}

crate::forward_only!();
