use sea_orm_migration::prelude::*;

/// SHA-256 of every patient id, across organizations and without them: lets
/// the server tell "no such patient" from "another organization's patient"
/// (a cross-tenant attempt, recorded as a security event) for an id it was
/// handed, without any way to list ids or learn whose they are.
async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::with_grants(
        manager,
        "CREATE TABLE patient_id_hashes (hash bytea PRIMARY KEY)",
        "GRANT SELECT, INSERT, DELETE ON patient_id_hashes TO {app}",
    )
    .await
}

crate::forward_only!();
