use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// Voicemail: a blind index of each patient's phone number (its last ten
/// digits, under the organization's index key) to attach a caller's
/// message to the patient; and the voicemails, one per inbound call: the
/// caller's number, the audio and its transcript sealed, bound to the row.
/// Patients created before this migration are indexed when their record
/// is next written or the organization's keys are rotated.
const TABLES: &str = "
ALTER TABLE patients ADD COLUMN phone_idx bytea;
CREATE INDEX patients_phone_idx ON patients (org_id, phone_idx);
CREATE TABLE telephony_voicemails (
    org_id              uuid        NOT NULL,
    id                  uuid        NOT NULL,
    call_sid            text        NOT NULL CHECK (length(call_sid) BETWEEN 2 AND 64),
    key_version         integer     NOT NULL,
    caller              bytea       NOT NULL CHECK (length(caller) <= 200),
    patient_id          uuid,
    recording_sid       text        CHECK (length(recording_sid) BETWEEN 2 AND 64),
    audio               bytea       CHECK (length(audio) <= 10486000),
    transcript          bytea       CHECK (length(transcript) <= 70000),
    duration_seconds    integer     CHECK (duration_seconds BETWEEN 0 AND 600),
    deleted_at_provider timestamptz,
    received_at         timestamptz NOT NULL,
    recorded_at         timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, call_sid),
    UNIQUE (org_id, recording_sid),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
);
CREATE INDEX telephony_voicemails_received ON telephony_voicemails (org_id, received_at);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["telephony_voicemails"]).await
}

crate::forward_only!();
