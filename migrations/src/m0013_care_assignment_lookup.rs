use sea_orm_migration::prelude::*;

/// The relationship check on every clinician read asks for one (org,
/// subject, patient) triple. With `care_assignments_subject` on (org,
/// subject) only, PostgreSQL's generic plan walked every assignment of the
/// clinician and filtered on the patient: measured at about 800 index
/// entries per read for a clinician with 50,000 patients, growing with the
/// care team. The new index ends with the patient, so the check is one
/// probe whichever index the planner picks; listing a clinician's patients
/// still uses its (org, subject) prefix.
async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(
        "CREATE INDEX care_assignments_subject_patient ON care_assignments (org_id, subject, patient_id)",
    )
    .await?;
    db.execute_unprepared("DROP INDEX IF EXISTS care_assignments_subject")
        .await?;
    Ok(())
}

crate::forward_only!();
