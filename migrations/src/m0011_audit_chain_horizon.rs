use sea_orm_migration::prelude::*;

/// PostgreSQL only: each audit event records the transaction that wrote it
/// (`tx`), and the chainer keeps, per organization, the oldest transaction
/// that was still running when it last chained everything (`horizon`).
/// Every event written by an older transaction was visible then, and was
/// chained; so each pass only looks at events with `tx >= horizon`
/// instead of a time window, and costs what arrived since the last pass.
/// The horizon is a hint, not evidence: were it pushed forward, the events
/// it skips would stay unchained, and `audit verify` reports unchained
/// events.
const PG: &str =
    "ALTER TABLE audit_events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX audit_events_tx ON audit_events (org_id, tx);
CREATE TABLE audit_chain_horizons (
    org_id  uuid PRIMARY KEY,
    horizon xid8 NOT NULL
);
ALTER TABLE audit_chain_horizons ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_chain_horizons FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_chain_horizons_tenant_isolation ON audit_chain_horizons
  USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
  WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::postgres_only(
        manager,
        PG,
        "GRANT SELECT, INSERT, UPDATE ON audit_chain_horizons TO {app}",
    )
    .await
}

crate::forward_only!();
