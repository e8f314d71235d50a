use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// The AI assistant: each user's conversation, every message sealed; and
/// the organization's declaration of a business associate agreement for
/// AI (`ai_baa`, off by default).
const TABLES: &str = "
ALTER TABLE organizations ADD COLUMN ai_baa boolean NOT NULL DEFAULT false;
CREATE TABLE assistant_turns (
    org_id      uuid        NOT NULL,
    id          uuid        NOT NULL,
    subject     text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    speaker     text        NOT NULL CHECK (speaker IN ('user', 'assistant')),
    key_version integer     NOT NULL,
    content     bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX assistant_turns_subject ON assistant_turns (org_id, subject, id);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["assistant_turns"]).await?;
    crate::on_postgres(manager, "GRANT UPDATE (ai_baa) ON organizations TO {app}").await?;
    Ok(())
}

crate::forward_only!();
