use sea_orm_migration::prelude::*;

/// The queue of signed checkpoints to write to the witness outside the
/// database (docs/adr/0008-audit-trail.md): the chainer queues each
/// checkpoint in the transaction that signs it, the anchoring pass writes
/// it to the witness and sets `anchored_at`. `audit_checkpoints` itself
/// stays append-only; this table is a hint, not evidence (the witness is
/// the evidence, and `audit verify` compares with it).
///
/// On PostgreSQL it is under forced row-level security like every table
/// with an `org_id`, with one difference: every row may be *read* whatever
/// the tenant setting, so every instance reads the backlog (the oldest
/// checkpoint still waiting) in one query for readiness and the PHI gate,
/// and the anchoring pass finds the waiting ones across organizations. A
/// row holds an organization id, a position and two times: nothing about
/// patients. Writing is confined to the tenant as everywhere.
const TABLE: &str = "CREATE TABLE audit_witness_queue (
    org_id      uuid        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('head', 'tombstone')),
    position    bigint      NOT NULL CHECK (position >= 0),
    queued_at   timestamptz NOT NULL,
    anchored_at timestamptz,
    PRIMARY KEY (org_id, kind, position)
)";

const WAITING: &str = "CREATE INDEX audit_witness_queue_waiting
    ON audit_witness_queue (queued_at) WHERE anchored_at IS NULL";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(TABLE).await?;
    db.execute_unprepared(WAITING).await?;
    crate::on_postgres(
        manager,
        "ALTER TABLE audit_witness_queue ENABLE ROW LEVEL SECURITY;
             ALTER TABLE audit_witness_queue FORCE ROW LEVEL SECURITY;
             CREATE POLICY audit_witness_queue_backlog ON audit_witness_queue
               FOR SELECT USING (true);
             CREATE POLICY audit_witness_queue_queue ON audit_witness_queue
               FOR INSERT
               WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
             CREATE POLICY audit_witness_queue_anchor ON audit_witness_queue
               FOR UPDATE
               USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
               WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
             GRANT SELECT, INSERT, UPDATE ON audit_witness_queue TO {app};",
    )
    .await
}

crate::forward_only!();
