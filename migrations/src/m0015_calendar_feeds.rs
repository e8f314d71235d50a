use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Per-practitioner calendar feeds behind revocable tokens (stored as
/// SHA-256 only), and two organization settings: what feeds show
/// (`calendar_detail`) and whether referrals may cross to other
/// organizations (`external_referrals`).
const TABLES: &str = "
ALTER TABLE organizations ADD COLUMN calendar_detail text NOT NULL DEFAULT 'minimal'
    CHECK (calendar_detail IN ('minimal', 'initials'));
ALTER TABLE organizations ADD COLUMN external_referrals boolean NOT NULL DEFAULT false;
CREATE TABLE calendar_feeds (
    org_id       uuid        NOT NULL,
    id           uuid        NOT NULL,
    practitioner text        NOT NULL CHECK (length(practitioner) BETWEEN 1 AND 255),
    token_hash   bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX calendar_feeds_token ON calendar_feeds (org_id, token_hash);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["calendar_feeds"]).await?;
    crate::on_postgres(
        manager,
        "GRANT UPDATE (calendar_detail, external_referrals) ON organizations TO {app}",
    )
    .await
}

crate::forward_only!();
