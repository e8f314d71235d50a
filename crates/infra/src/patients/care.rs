//! Care-team assignments (who is on a patient's care team, in which role).

use super::*;
use crate::db::Run as _;

pub(super) async fn insert_assignment(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    id: PatientId,
    subject: &SubjectId,
    role: CareRole,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let exists = care_assignment::Entity::find()
        .scoped(ctx)
        .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
        .filter(care_assignment::Column::Subject.eq(subject.as_str()))
        .one_in(tx)
        .await?;
    match exists {
        None => {
            new_assignment(ctx, id, subject, role, now).run(tx).await?;
        }
        Some(found) if found.role != role.as_str() => {
            let mut change: care_assignment::ActiveModel = found.into();
            change.role = Set(role.as_str().to_owned());
            change.update(tx).await.map_err(storage_error)?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// The insert of an assignment the patient does not have yet.
pub(super) fn new_assignment(
    ctx: &TenantContext,
    id: PatientId,
    subject: &SubjectId,
    role: CareRole,
    now: OffsetDateTime,
) -> sea_orm::Insert<care_assignment::ActiveModel> {
    care_assignment::Entity::insert(care_assignment::ActiveModel {
        org_id: Set(ctx.org().as_uuid()),
        patient_id: Set(id.as_uuid()),
        subject: Set(subject.as_str().to_owned()),
        created_at: Set(now),
        role: Set(role.as_str().to_owned()),
    })
}
