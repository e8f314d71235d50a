use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Prior-authorization verification tasks and their call transcripts
/// (text only: no audio is ever stored). Every payer, plan, code,
/// reference, reason and transcript chunk is ciphertext; a transcript is
/// at most 16 chunks of 16 KiB.
const TABLES: &str = "
CREATE TABLE verification_tasks (
    org_id            uuid        NOT NULL,
    id                uuid        NOT NULL,
    patient_id        uuid        NOT NULL,
    key_version       integer     NOT NULL,
    payer_name        bytea       NOT NULL,
    payer_phone       bytea       NOT NULL,
    plan              bytea       NOT NULL,
    procedure_codes   bytea       NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'claimed', 'calling', 'completed', 'failed', 'cancelled')),
    claimed_by        text        CHECK (length(claimed_by) BETWEEN 1 AND 255),
    reference_number  bytea,
    failure_reason    bytea,
    transcript_chunks integer     NOT NULL DEFAULT 0 CHECK (transcript_chunks BETWEEN 0 AND 16),
    created_by        text        NOT NULL CHECK (length(created_by) BETWEEN 1 AND 255),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
);
CREATE INDEX verification_tasks_status ON verification_tasks (org_id, status, id);
CREATE TABLE verification_transcripts (
    org_id      uuid        NOT NULL,
    task_id     uuid        NOT NULL,
    seq         integer     NOT NULL CHECK (seq BETWEEN 0 AND 15),
    key_version integer     NOT NULL,
    chunk       bytea       NOT NULL CHECK (length(chunk) <= 16500),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, task_id, seq),
    FOREIGN KEY (org_id, task_id) REFERENCES verification_tasks (org_id, id) ON DELETE CASCADE
);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(
        manager,
        TABLES,
        &["verification_tasks", "verification_transcripts"],
    )
    .await
}

crate::forward_only!();
