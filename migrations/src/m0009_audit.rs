use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::APP_ROLE;

/// The audit trail: events (written in the same transaction as the access
/// they record), the per-organization hash chain over them, and signed
/// checkpoints. All three are append-only: the server role may only INSERT
/// and SELECT, and triggers refuse UPDATE, DELETE and TRUNCATE for every
/// role, the owner included, outside the retention procedure
/// (docs/adr/0008-audit-trail.md).
const TABLES: &[&str] = &[
    "CREATE TABLE audit_events (
        org_id        uuid        NOT NULL,
        id            uuid        NOT NULL,
        recorded_at   timestamptz NOT NULL,
        actor         text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 255),
        action        text        NOT NULL CHECK (length(action) BETWEEN 1 AND 256),
        resource_type text        NOT NULL CHECK (length(resource_type) BETWEEN 1 AND 256),
        resource_id   text        CHECK (length(resource_id) <= 256),
        outcome       text        NOT NULL CHECK (outcome IN ('allowed', 'denied', 'not_found', 'error')),
        body          text        NOT NULL CHECK (length(body) <= 8192),
        PRIMARY KEY (org_id, id)
    )",
    "CREATE INDEX audit_events_time ON audit_events (org_id, recorded_at, id)",
    "CREATE INDEX audit_events_resource ON audit_events (org_id, resource_type, resource_id, recorded_at)",
    "CREATE INDEX audit_events_actor ON audit_events (org_id, actor, recorded_at)",
    "CREATE TABLE audit_chain (
        org_id   uuid   NOT NULL,
        position bigint NOT NULL CHECK (position >= 1),
        event_id uuid   NOT NULL,
        leaf     bytea  NOT NULL,
        link     bytea  NOT NULL,
        PRIMARY KEY (org_id, position),
        UNIQUE (org_id, event_id)
    )",
    "CREATE TABLE audit_checkpoints (
        org_id    uuid        NOT NULL,
        kind      text        NOT NULL CHECK (kind IN ('head', 'tombstone')),
        position  bigint      NOT NULL CHECK (position >= 0),
        link      bytea       NOT NULL,
        signed_at timestamptz NOT NULL,
        signature bytea       NOT NULL,
        PRIMARY KEY (org_id, kind, position)
    )",
];

/// Break-glass reasons are free text that may mention clinical context:
/// from now on stored encrypted (the old column keeps a marker).
const BREAK_GLASS_SEALED: &str = "ALTER TABLE break_glass_grants ADD COLUMN reason_sealed bytea";

const AUDIT_TABLES: [&str; 3] = ["audit_events", "audit_chain", "audit_checkpoints"];

const PG_GUARD: &str = "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('carapace.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit tables are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in TABLES {
        db.execute_unprepared(statement).await?;
    }
    db.execute_unprepared(BREAK_GLASS_SEALED).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(PG_GUARD).await?;
        for table in AUDIT_TABLES {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
                 CREATE POLICY {table}_tenant_isolation ON {table}
                   USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
                   WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
                 GRANT SELECT, INSERT ON {table} TO {APP_ROLE};
                 CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                   FOR EACH ROW EXECUTE FUNCTION audit_append_only();
                 CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                   FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();"
            ))
            .await?;
        }
    } else {
        // The retention procedure opens a window (a row here) inside
        // its own transaction; DELETE passes only while it is open.
        db.execute_unprepared("CREATE TABLE audit_retention_window (opened_at text NOT NULL)")
            .await?;
        for table in AUDIT_TABLES {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
                 BEGIN SELECT RAISE(ABORT, 'audit tables are append-only (UPDATE refused)'); END;
                 CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                 WHEN NOT EXISTS (SELECT 1 FROM audit_retention_window)
                 BEGIN SELECT RAISE(ABORT, 'audit tables are append-only (DELETE refused)'); END;"
            ))
            .await?;
        }
    }
    Ok(())
}

crate::forward_only!();
