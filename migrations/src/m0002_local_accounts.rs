use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Local accounts, sessions (refresh-token families), their single-use
/// refresh tokens (SHA-256 only), and security events. Every table is
/// tenant-owned; keys and references are composite with `org_id`.
const TABLES: &str = "
CREATE TABLE users (
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    id            uuid        NOT NULL,
    email         text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text,
    roles         text        NOT NULL,
    active        boolean     NOT NULL,
    failed_logins integer     NOT NULL,
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, email)
);
CREATE TABLE sessions (
    org_id       uuid        NOT NULL,
    id           uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    amr          text        NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    revoked_at   timestamptz,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id) ON DELETE CASCADE
);
CREATE TABLE refresh_tokens (
    org_id     uuid        NOT NULL,
    hash       bytea       NOT NULL,
    session_id uuid        NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, hash),
    FOREIGN KEY (org_id, session_id) REFERENCES sessions (org_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (org_id, session_id);
CREATE TABLE security_events (
    org_id  uuid        NOT NULL REFERENCES organizations (id),
    id      uuid        NOT NULL,
    kind    text        NOT NULL,
    subject text,
    at      timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);
";

const TENANT_TABLES: [&str; 4] = ["users", "sessions", "refresh_tokens", "security_events"];

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &TENANT_TABLES).await
}

crate::forward_only!();
