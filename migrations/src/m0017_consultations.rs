use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Consents and referrals live with the patient's organization; a referral
/// leaves a mirror in the receiving organization (`incoming_referrals`),
/// the one thing its clinician can find there. Each side's rows are under
/// its own row-level security.
const TABLES: &str = "
CREATE TABLE consents (
    org_id        uuid        NOT NULL,
    id            uuid        NOT NULL,
    patient_id    uuid        NOT NULL,
    recipient_org uuid        NOT NULL,
    recipient     text        NOT NULL CHECK (length(recipient) BETWEEN 1 AND 255),
    sections      text        NOT NULL CHECK (length(sections) BETWEEN 1 AND 100),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    recorded_by   text        NOT NULL CHECK (length(recorded_by) BETWEEN 1 AND 255),
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
);
CREATE INDEX consents_patient ON consents (org_id, patient_id);
CREATE TABLE referrals (
    org_id       uuid        NOT NULL,
    id           uuid        NOT NULL,
    patient_id   uuid        NOT NULL,
    consent_id   uuid        NOT NULL,
    from_subject text        NOT NULL CHECK (length(from_subject) BETWEEN 1 AND 255),
    to_org       uuid        NOT NULL,
    to_subject   text        NOT NULL CHECK (length(to_subject) BETWEEN 1 AND 255),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, consent_id) REFERENCES consents (org_id, id) ON DELETE CASCADE
);
CREATE INDEX referrals_from ON referrals (org_id, from_subject);
CREATE TABLE incoming_referrals (
    org_id       uuid        NOT NULL,
    id           uuid        NOT NULL,
    source_org   uuid        NOT NULL,
    patient_id   uuid        NOT NULL,
    consent_id   uuid        NOT NULL,
    from_subject text        NOT NULL CHECK (length(from_subject) BETWEEN 1 AND 255),
    to_subject   text        NOT NULL CHECK (length(to_subject) BETWEEN 1 AND 255),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX incoming_referrals_to ON incoming_referrals (org_id, to_subject);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(
        manager,
        TABLES,
        &["consents", "referrals", "incoming_referrals"],
    )
    .await
}

crate::forward_only!();
