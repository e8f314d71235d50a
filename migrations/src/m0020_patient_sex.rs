use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A patient's sex (sealed like every demographic field; optional).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::sea_orm::ConnectionTrait as _;
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE patients ADD COLUMN sex bytea")
            .await?;
        Ok(())
    }
}
