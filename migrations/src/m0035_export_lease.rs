use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A bulk export in progress is renewed by the server writing it
/// (`renewed_at`); one not renewed within its lease was left by a server
/// that stopped, and is reported failed instead of in progress forever.
/// An export without it (started before this column) counts as renewed
/// when it was started.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_both(
            manager,
            "ALTER TABLE bulk_exports ADD COLUMN renewed_at timestamptz NULL",
        )
        .await
    }
}
