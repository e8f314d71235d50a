use sea_orm_migration::prelude::*;

/// A conversation with the assistant belongs to one user and at most one
/// patient context, chosen when it starts: each turn names the patient its
/// conversation is about (none: a conversation about no patient), so a
/// turn about one patient is never sent with a message about another.
const SQL: &str = "
ALTER TABLE assistant_turns ADD COLUMN patient_id uuid;
CREATE INDEX assistant_turns_conversation ON assistant_turns (org_id, subject, patient_id, id);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::ConnectionTrait as _;
    manager.get_connection().execute_unprepared(SQL).await?;
    Ok(())
}

crate::forward_only!();
