use sea_orm_migration::prelude::*;

/// Alerts waiting for delivery: written in the same transaction as the
/// security event that raised them, so none is lost; delivered (and
/// retried with backoff) by the server's alert job.
const TABLE: &str = "CREATE TABLE alert_outbox (
    org_id          uuid        NOT NULL,
    id              uuid        NOT NULL,
    rule            text        NOT NULL CHECK (length(rule) BETWEEN 1 AND 64),
    payload         text        NOT NULL CHECK (length(payload) <= 8192),
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text        CHECK (length(last_error) <= 512),
    PRIMARY KEY (org_id, id)
)";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(TABLE).await?;
    db.execute_unprepared(
        "CREATE INDEX alert_outbox_due ON alert_outbox (org_id, delivered_at, next_attempt_at)",
    )
    .await?;
    crate::on_postgres(manager, "ALTER TABLE alert_outbox ENABLE ROW LEVEL SECURITY;
             ALTER TABLE alert_outbox FORCE ROW LEVEL SECURITY;
             CREATE POLICY alert_outbox_tenant_isolation ON alert_outbox
               USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
               WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
             GRANT SELECT, INSERT ON alert_outbox TO {app};
             GRANT UPDATE (attempts, next_attempt_at, delivered_at, last_error) ON alert_outbox TO {app};").await?;
    Ok(())
}

crate::forward_only!();
