use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::APP_ROLE;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// An organization is deleted by stamping `deleted_at` and destroying its
/// data keys (crypto-shredding). The row stays so that its slug is never
/// reused and audit records keep a referent; the directory no longer
/// returns it, so no token, login or key can be issued for it again.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE organizations ADD COLUMN deleted_at timestamptz NULL")
            .await?;
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&format!(
                "GRANT UPDATE (deleted_at) ON organizations TO {APP_ROLE}"
            ))
            .await?;
        }
        Ok(())
    }
}
