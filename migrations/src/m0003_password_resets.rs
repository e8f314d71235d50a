use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

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
        create_tenant_tables(manager, TABLES, &["password_resets"]).await
    }
}
