use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// SMART Backend Services: a service key may hold the public JWKS of a
/// backend client (its assertions are verified against it), and every
/// assertion's `jti` is kept until it expires so it is accepted once.
const TABLES: &str = "
ALTER TABLE service_keys ADD COLUMN jwks text CHECK (length(jwks) <= 16384);
CREATE TABLE backend_assertions (
    org_id     uuid        NOT NULL REFERENCES organizations (id),
    key_id     uuid        NOT NULL,
    jti        text        NOT NULL CHECK (length(jti) BETWEEN 1 AND 255),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, key_id, jti),
    FOREIGN KEY (org_id, key_id) REFERENCES service_keys (org_id, id) ON DELETE CASCADE
);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["backend_assertions"]).await
}

crate::forward_only!();
