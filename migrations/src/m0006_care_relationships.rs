use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::{APP_ROLE, tenant_table_sql};

/// Who may reach which patient: care-team assignments, time-limited
/// break-glass grants, the patient's own account, and the organization's
/// choice of clinician scope (`care_team` or `organization`) and of who
/// needs MFA for PHI (`admin` or `all_staff`).
const STATEMENTS: &[&str] = &[
    "ALTER TABLE organizations ADD COLUMN clinician_scope text NOT NULL DEFAULT 'care_team'",
    "ALTER TABLE organizations ADD COLUMN phi_mfa text NOT NULL DEFAULT 'admin'",
    "ALTER TABLE patients ADD COLUMN account_subject text",
    "CREATE TABLE care_assignments (
        org_id     uuid        NOT NULL,
        patient_id uuid        NOT NULL,
        subject    text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
        created_at timestamptz NOT NULL,
        PRIMARY KEY (org_id, patient_id, subject),
        FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
    )",
    "CREATE INDEX care_assignments_subject ON care_assignments (org_id, subject)",
    "CREATE TABLE break_glass_grants (
        org_id     uuid        NOT NULL,
        id         uuid        NOT NULL,
        patient_id uuid        NOT NULL,
        subject    text        NOT NULL,
        reason     text        NOT NULL CHECK (length(reason) BETWEEN 20 AND 1000),
        expires_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (org_id, id),
        FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
    )",
    "CREATE INDEX break_glass_subject ON break_glass_grants (org_id, subject, patient_id)",
];

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in STATEMENTS {
        db.execute_unprepared(statement).await?;
    }
    if db.get_database_backend() == DbBackend::Postgres {
        for table in ["care_assignments", "break_glass_grants"] {
            db.execute_unprepared(&tenant_table_sql(table)).await?;
        }
        // The server may change these settings of an organization, nothing else.
        db.execute_unprepared(&format!(
            "GRANT UPDATE (clinician_scope, phi_mfa) ON organizations TO {APP_ROLE}"
        ))
        .await?;
    }
    Ok(())
}

crate::forward_only!();
