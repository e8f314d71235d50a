use sea_orm_migration::prelude::*;

/// The deployment's kill switch: one row, read by every instance every
/// second. Not tenant data (it stops every tenant), so no row-level
/// security; each change is recorded in every organization's audit trail
/// in the same transaction.
const TABLE: &str = "CREATE TABLE kill_switch (
    id         smallint    PRIMARY KEY CHECK (id = 1),
    engaged    boolean     NOT NULL,
    reason     text        CHECK (length(reason) <= 500),
    changed_by text        NOT NULL CHECK (length(changed_by) BETWEEN 1 AND 200),
    changed_at timestamptz NOT NULL
)";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::with_grants(
        manager,
        TABLE,
        "GRANT SELECT, INSERT, UPDATE ON kill_switch TO {app}",
    )
    .await
}

crate::forward_only!();
