use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

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

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["password_resets"]).await
}

crate::forward_only!();
