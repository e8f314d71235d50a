use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::create_tenant_tables;

/// Appointments, their reminder outbox and patients' reminder opt-outs;
/// care-team assignments gain a role (`primary` or `consulting`).
///
/// Times are UTC at whole seconds. No two booked appointments overlap for
/// one practitioner or one patient: on PostgreSQL two exclusion
/// constraints over `tstzrange(starts_at, ends_at)` (btree_gist) refuse the
/// second of two concurrent bookings; on SQLite, whose writers are
/// serialized, a trigger refuses it inside the writing transaction.
const TABLES: &str = "
ALTER TABLE care_assignments ADD COLUMN role text NOT NULL DEFAULT 'primary'
    CHECK (role IN ('primary', 'consulting'));
CREATE TABLE appointments (
    org_id       uuid        NOT NULL,
    id           uuid        NOT NULL,
    patient_id   uuid        NOT NULL,
    practitioner text        NOT NULL CHECK (length(practitioner) BETWEEN 1 AND 255),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    time_zone    text        NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    status       text        NOT NULL CHECK (status IN ('booked', 'completed', 'cancelled', 'no_show')),
    key_version  integer     NOT NULL,
    reason       bytea,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE,
    CHECK (starts_at < ends_at)
);
CREATE INDEX appointments_by_start ON appointments (org_id, starts_at, id);
CREATE INDEX appointments_by_patient ON appointments (org_id, patient_id, starts_at);
CREATE INDEX appointments_by_practitioner ON appointments (org_id, practitioner, starts_at);
CREATE TABLE appointment_reminders (
    org_id          uuid        NOT NULL,
    id              uuid        NOT NULL,
    appointment_id  uuid        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('email', 'sms')),
    due_at          timestamptz NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    sent_at         timestamptz,
    last_error      text        CHECK (length(last_error) <= 500),
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, appointment_id) REFERENCES appointments (org_id, id) ON DELETE CASCADE
);
CREATE INDEX appointment_reminders_due ON appointment_reminders (org_id, status, next_attempt_at);
CREATE INDEX appointment_reminders_of ON appointment_reminders (org_id, appointment_id);
CREATE TABLE reminder_opt_outs (
    org_id     uuid        NOT NULL,
    patient_id uuid        NOT NULL,
    channel    text        NOT NULL CHECK (channel IN ('email', 'sms')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, patient_id, channel),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, id) ON DELETE CASCADE
);
";

const POSTGRES_GUARDS: &str = "
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE appointments ADD CONSTRAINT appointments_practitioner_free
    EXCLUDE USING gist (org_id WITH =, practitioner WITH =, tstzrange(starts_at, ends_at) WITH &&)
    WHERE (status = 'booked');
ALTER TABLE appointments ADD CONSTRAINT appointments_patient_free
    EXCLUDE USING gist (org_id WITH =, patient_id WITH =, tstzrange(starts_at, ends_at) WITH &&)
    WHERE (status = 'booked');
";

/// The message the SQLite guard raises (the repository maps it to a 409).
pub const SQLITE_OVERLAP: &str = "appointment overlaps a booked appointment";

fn sqlite_guards() -> String {
    let clash = "EXISTS (SELECT 1 FROM appointments a
            WHERE a.org_id = NEW.org_id AND a.id <> NEW.id AND a.status = 'booked'
              AND (a.practitioner = NEW.practitioner OR a.patient_id = NEW.patient_id)
              AND a.starts_at < NEW.ends_at AND NEW.starts_at < a.ends_at)";
    format!(
        "CREATE TRIGGER appointments_free_on_insert BEFORE INSERT ON appointments
           WHEN NEW.status = 'booked' AND {clash}
           BEGIN SELECT RAISE(ABORT, '{SQLITE_OVERLAP}'); END;
         CREATE TRIGGER appointments_free_on_update BEFORE UPDATE ON appointments
           WHEN NEW.status = 'booked' AND {clash}
           BEGIN SELECT RAISE(ABORT, '{SQLITE_OVERLAP}'); END;"
    )
}

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(
        manager,
        TABLES,
        &["appointments", "appointment_reminders", "reminder_opt_outs"],
    )
    .await?;
    let db = manager.get_connection();
    match db.get_database_backend() {
        DbBackend::Postgres => db.execute_unprepared(POSTGRES_GUARDS).await?,
        _ => db.execute_unprepared(&sqlite_guards()).await?,
    };
    Ok(())
}

crate::forward_only!();
