use sea_orm_migration::prelude::*;

/// A bulk export in progress is renewed by the server writing it
/// (`renewed_at`); one not renewed within its lease was left by a server
/// that stopped, and is reported failed instead of in progress forever.
/// An export without it (started before this column) counts as renewed
/// when it was started.
async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::on_both(
        manager,
        "ALTER TABLE bulk_exports ADD COLUMN renewed_at timestamptz NULL",
    )
    .await
}

crate::forward_only!();
