use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Medication statements and side-effect reports: every clinical field is
/// ciphertext (dates too: tied to a person they are identifiers).
const TABLES: &str = "
CREATE TABLE medication_statements (
    org_id      uuid        NOT NULL,
    id          uuid        NOT NULL,
    patient_id  uuid        NOT NULL,
    key_version integer     NOT NULL,
    drug_name   bytea       NOT NULL,
    dose        bytea       NOT NULL,
    schedule    bytea       NOT NULL,
    started_on  bytea       NOT NULL,
    stopped_on  bytea,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
);
CREATE INDEX medication_statements_patient ON medication_statements (org_id, patient_id, id);
CREATE TABLE side_effects (
    org_id      uuid        NOT NULL,
    id          uuid        NOT NULL,
    patient_id  uuid        NOT NULL,
    key_version integer     NOT NULL,
    symptom     bytea       NOT NULL,
    severity    bytea       NOT NULL,
    onset_on    bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
);
CREATE INDEX side_effects_patient ON side_effects (org_id, patient_id, id);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["medication_statements", "side_effects"]).await
}

crate::forward_only!();
