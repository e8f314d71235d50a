use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Telephony: each organization's account at the provider (its auth token
/// sealed under the organization's data key, bound to the organization),
/// the calls Carapace placed for verification tasks (at most one live call
/// a task), the status callbacks processed (a replay finds its row), and
/// call recordings (audio sealed, bound to the recording's row), which go
/// with their task.
const TABLES: &str = "
CREATE TABLE telephony_accounts (
    org_id         uuid        NOT NULL PRIMARY KEY,
    key_version    integer     NOT NULL,
    account_sid    text        NOT NULL CHECK (length(account_sid) BETWEEN 2 AND 64),
    auth_token     bytea       NOT NULL CHECK (length(auth_token) <= 400),
    caller_number  text        NOT NULL CHECK (length(caller_number) BETWEEN 1 AND 32),
    bot_stream_url text        NOT NULL CHECK (length(bot_stream_url) BETWEEN 1 AND 500),
    updated_at     timestamptz NOT NULL
);
CREATE TABLE telephony_calls (
    org_id       uuid        NOT NULL,
    call_sid     text        NOT NULL CHECK (length(call_sid) BETWEEN 2 AND 64),
    task_id      uuid        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('queued', 'ringing', 'in-progress', 'completed', 'busy', 'no-answer', 'failed', 'canceled')),
    placed_by    text        NOT NULL CHECK (length(placed_by) BETWEEN 1 AND 255),
    escalated_at timestamptz,
    ended_at     timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, call_sid),
    FOREIGN KEY (org_id, task_id) REFERENCES verification_tasks (org_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX telephony_calls_one_live ON telephony_calls (org_id, task_id) WHERE ended_at IS NULL;
CREATE TABLE telephony_callbacks (
    org_id      uuid        NOT NULL,
    call_sid    text        NOT NULL,
    event       text        NOT NULL CHECK (length(event) BETWEEN 1 AND 80),
    received_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, call_sid, event),
    FOREIGN KEY (org_id, call_sid) REFERENCES telephony_calls (org_id, call_sid) ON DELETE CASCADE
);
CREATE TABLE telephony_recordings (
    org_id              uuid        NOT NULL,
    id                  uuid        NOT NULL,
    recording_sid       text        NOT NULL CHECK (length(recording_sid) BETWEEN 2 AND 64),
    call_sid            text        NOT NULL,
    task_id             uuid        NOT NULL,
    key_version         integer     NOT NULL,
    audio               bytea       NOT NULL CHECK (length(audio) <= 10486000),
    duration_seconds    integer     NOT NULL CHECK (duration_seconds BETWEEN 0 AND 600),
    deleted_at_provider timestamptz,
    created_at          timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, recording_sid),
    FOREIGN KEY (org_id, task_id) REFERENCES verification_tasks (org_id, id) ON DELETE CASCADE
);
CREATE INDEX telephony_recordings_task ON telephony_recordings (org_id, task_id);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(
        manager,
        TABLES,
        &[
            "telephony_accounts",
            "telephony_calls",
            "telephony_callbacks",
            "telephony_recordings",
        ],
    )
    .await
}

crate::forward_only!();
