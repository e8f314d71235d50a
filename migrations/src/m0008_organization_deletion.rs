use sea_orm_migration::prelude::*;

/// An organization is deleted by stamping `deleted_at` and destroying its
/// data keys (crypto-shredding). The row stays so that its slug is never
/// reused and audit records keep a referent; the directory no longer
/// returns it, so no token, login or key can be issued for it again.
async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::with_grants(
        manager,
        "ALTER TABLE organizations ADD COLUMN deleted_at timestamptz NULL",
        "GRANT UPDATE (deleted_at) ON organizations TO {app}",
    )
    .await
}

crate::forward_only!();
