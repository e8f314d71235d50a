use sea_orm_migration::prelude::*;

/// A patient's sex (sealed like every demographic field; optional).
async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::ConnectionTrait as _;
    manager
        .get_connection()
        .execute_unprepared("ALTER TABLE patients ADD COLUMN sex bytea")
        .await?;
    Ok(())
}

crate::forward_only!();
