use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::tenant_table_sql;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Password-reset tokens (SHA-256 only), single use, with an expiry.
const TABLES: &str = "
CREATE TABLE password_resets (
    org_id     uuid        NOT NULL,
    hash       bytea       NOT NULL,
    user_id    uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, hash),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id) ON DELETE CASCADE
);
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(TABLES).await?;
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&tenant_table_sql("password_resets"))
                .await?;
        }
        Ok(())
    }
}
