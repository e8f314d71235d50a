use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// An organization's verification settings: the supervisor's number a bot
/// hands a call to when it escalates (seed 001 kept it in plaintext
/// patient data). Ciphertext under the organization's data key, bound to
/// the organization; one row per organization.
const TABLES: &str = "
CREATE TABLE verification_settings (
    org_id           uuid        NOT NULL PRIMARY KEY,
    key_version      integer     NOT NULL,
    supervisor_phone bytea       CHECK (length(supervisor_phone) <= 200),
    updated_at       timestamptz NOT NULL
);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["verification_settings"]).await
}

crate::forward_only!();
