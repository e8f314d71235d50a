use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Service-account API keys (SHA-256 only), org-bound and revocable.
const TABLES: &str = "
CREATE TABLE service_keys (
    org_id       uuid        NOT NULL REFERENCES organizations (id),
    id           uuid        NOT NULL,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    hash         bytea       NOT NULL,
    roles        text        NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, hash)
);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["service_keys"]).await
}

crate::forward_only!();
