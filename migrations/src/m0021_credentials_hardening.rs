use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// What the attack of issue #16 asked of credentials and sessions:
/// - `users.admin_locked`: an administrator's lock, apart from the
///   automatic throttling that `failed_logins` and `locked_until` (now
///   "throttled until") keep; the old "locked for good" date becomes the
///   flag;
/// - `login_addresses`: where an account last signed in successfully
///   (hashed), so its owner is not throttled by a stranger's guesses;
/// - `login_address_failures`: failures per client address (hashed)
///   across organizations, for rising per-address delays (not tenant data);
/// - `mfa_challenges_spent`: MFA challenges already used (single use);
/// - `refresh_tokens.successor`: the successor of a spent refresh token,
///   sealed under a key only the spent token derives, for the short grace
///   window in which two tabs may present it together;
/// - `subject_blocks`: locks, deactivations and not-before times of
///   identity-provider subjects, checked on every request;
/// - `idempotency_keys`: `Idempotency-Key` records of creating requests,
///   keys hashed per principal, responses sealed under the org's data key.
const TABLES: &str = "
ALTER TABLE users ADD COLUMN admin_locked boolean NOT NULL DEFAULT false;
UPDATE users SET admin_locked = true, locked_until = NULL, failed_logins = 0
    WHERE locked_until >= '9999-01-01';
ALTER TABLE refresh_tokens ADD COLUMN successor bytea;
CREATE TABLE login_addresses (
    org_id          uuid        NOT NULL,
    user_id         uuid        NOT NULL,
    address_hash    bytea       NOT NULL,
    last_success_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id, address_hash),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id) ON DELETE CASCADE
);
CREATE TABLE mfa_challenges_spent (
    org_id     uuid        NOT NULL,
    id         uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE TABLE subject_blocks (
    org_id     uuid        NOT NULL REFERENCES organizations (id),
    subject    text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    state      text        NOT NULL CHECK (state IN ('active', 'locked', 'deactivated')),
    not_before timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, subject)
);
CREATE TABLE idempotency_keys (
    org_id        uuid        NOT NULL,
    key_hash      bytea       NOT NULL,
    request_hash  bytea       NOT NULL,
    state         text        NOT NULL CHECK (state IN ('pending', 'committed', 'lost', 'complete')),
    status        integer,
    response      bytea,
    resource_type text        CHECK (length(resource_type) <= 64),
    resource_id   text        CHECK (length(resource_id) <= 255),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, key_hash)
);
CREATE TABLE login_address_failures (
    address_hash    bytea       PRIMARY KEY,
    failures        integer     NOT NULL,
    last_failure_at timestamptz NOT NULL,
    throttled_until timestamptz
);
";

const TENANT_TABLES: [&str; 4] = [
    "login_addresses",
    "mfa_challenges_spent",
    "subject_blocks",
    "idempotency_keys",
];

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &TENANT_TABLES).await?;
    crate::on_postgres(
        manager,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON login_address_failures TO {app}",
    )
    .await
}

crate::forward_only!();
