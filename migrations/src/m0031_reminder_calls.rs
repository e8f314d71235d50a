use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Reminder calls: `voice` joins the reminder channels (and the opt-outs);
/// a reminder records the patient's answer on the phone (once); an
/// organization's telephony account gains the front desk's number (key 3)
/// and its calling hours in the patient's time zone; a call recording
/// gains its (sealed) transcript.
const POSTGRES: &str = "
ALTER TABLE appointment_reminders DROP CONSTRAINT appointment_reminders_channel_check;
ALTER TABLE appointment_reminders ADD CONSTRAINT appointment_reminders_channel_check
    CHECK (channel IN ('email', 'sms', 'voice'));
ALTER TABLE appointment_reminders ADD COLUMN answer text CHECK (answer IN ('confirm', 'cancel', 'clinic'));
ALTER TABLE appointment_reminders ADD COLUMN answered_at timestamptz;
ALTER TABLE reminder_opt_outs DROP CONSTRAINT reminder_opt_outs_channel_check;
ALTER TABLE reminder_opt_outs ADD CONSTRAINT reminder_opt_outs_channel_check
    CHECK (channel IN ('email', 'sms', 'voice'));
";

/// SQLite cannot change a CHECK constraint: both tables are rebuilt (no
/// foreign key points at either), their rows copied, their indexes made
/// again.
const SQLITE: &str = "
CREATE TABLE appointment_reminders_v2 (
    org_id          uuid        NOT NULL,
    id              uuid        NOT NULL,
    appointment_id  uuid        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('email', 'sms', 'voice')),
    due_at          timestamptz NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    sent_at         timestamptz,
    last_error      text        CHECK (length(last_error) <= 500),
    created_at      timestamptz NOT NULL,
    answer          text        CHECK (answer IN ('confirm', 'cancel', 'clinic')),
    answered_at     timestamptz,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, appointment_id) REFERENCES appointments (org_id, id) ON DELETE CASCADE
);
INSERT INTO appointment_reminders_v2 (org_id, id, appointment_id, channel, due_at, status,
    attempts, next_attempt_at, sent_at, last_error, created_at)
  SELECT org_id, id, appointment_id, channel, due_at, status, attempts, next_attempt_at,
    sent_at, last_error, created_at FROM appointment_reminders;
DROP TABLE appointment_reminders;
ALTER TABLE appointment_reminders_v2 RENAME TO appointment_reminders;
CREATE INDEX appointment_reminders_due ON appointment_reminders (org_id, status, next_attempt_at);
CREATE INDEX appointment_reminders_of ON appointment_reminders (org_id, appointment_id);
CREATE TABLE reminder_opt_outs_v2 (
    org_id     uuid        NOT NULL,
    patient_id uuid        NOT NULL,
    channel    text        NOT NULL CHECK (channel IN ('email', 'sms', 'voice')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, patient_id, channel),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
);
INSERT INTO reminder_opt_outs_v2 SELECT org_id, patient_id, channel, created_at FROM reminder_opt_outs;
DROP TABLE reminder_opt_outs;
ALTER TABLE reminder_opt_outs_v2 RENAME TO reminder_opt_outs;
";

const BOTH: &str = "
ALTER TABLE telephony_accounts ADD COLUMN front_desk_number text CHECK (length(front_desk_number) BETWEEN 1 AND 32);
ALTER TABLE telephony_accounts ADD COLUMN call_from_hour integer NOT NULL DEFAULT 9 CHECK (call_from_hour BETWEEN 0 AND 23);
ALTER TABLE telephony_accounts ADD COLUMN call_until_hour integer NOT NULL DEFAULT 18 CHECK (call_until_hour BETWEEN 1 AND 24);
ALTER TABLE telephony_recordings ADD COLUMN transcript bytea CHECK (length(transcript) <= 70000);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    match db.get_database_backend() {
        DbBackend::Postgres => db.execute_unprepared(POSTGRES).await?,
        _ => db.execute_unprepared(SQLITE).await?,
    };
    db.execute_unprepared(BOTH).await?;
    Ok(())
}

crate::forward_only!();
