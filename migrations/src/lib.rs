//! Carapace's database migrations, run as the schema **owner** role.
//!
//! On PostgreSQL the first migration also creates the non-owner role the
//! server runs as ([`APP_ROLE`]), grants it only row access, and puts every
//! tenant-owned table under forced row-level security keyed on the
//! transaction-local setting `app.org_id`. On SQLite (single-user, embedded)
//! the same tables are created without roles or policies; isolation there
//! rests on the repositories' `org_id` filters.

use sea_orm_migration::prelude::*;

pub use sea_orm_migration::MigratorTrait;

mod m0001_organizations_patients;
mod m0002_local_accounts;
mod m0003_password_resets;
mod m0004_totp;
mod m0005_service_keys;
mod m0006_care_relationships;
mod m0007_patient_id_hashes;
mod m0008_organization_deletion;
mod m0009_audit;
mod m0010_alerts;
mod m0011_audit_chain_horizon;
mod m0012_kill_switch;
mod m0013_care_assignment_lookup;
mod m0014_appointments;
mod m0015_calendar_feeds;
mod m0016_medications;
mod m0017_consultations;
mod m0018_verification;
mod m0019_assistant;
mod m0020_patient_sex;
mod m0021_credentials_hardening;
mod m0022_audit_witness;
mod m0024_assistant_conversations;
mod m0026_verification_settings;
mod m0027_audit_partitions;
mod m0028_subject_standing;
mod m0029_telephony;
mod m0030_voicemail;
mod m0031_reminder_calls;
mod m0032_backend_services;
mod m0033_bulk_exports;
mod m0034_queue_pruning;
mod m0035_export_lease;

pub use m0014_appointments::SQLITE_OVERLAP;

/// Declares the module's `Migration`, named after its file, whose one step
/// is the module's `async fn up(manager)`: migrations only go forward.
macro_rules! forward_only {
    () => {
        #[derive(DeriveMigrationName)]
        pub struct Migration;

        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                up(manager).await
            }
        }
    };
}
pub(crate) use forward_only;

/// The PostgreSQL role the server connects as: no superuser, no BYPASSRLS,
/// owns nothing, may only read and write rows.
pub const APP_ROLE: &str = "carapace_app";

/// The migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_organizations_patients::Migration),
            Box::new(m0002_local_accounts::Migration),
            Box::new(m0003_password_resets::Migration),
            Box::new(m0004_totp::Migration),
            Box::new(m0005_service_keys::Migration),
            Box::new(m0006_care_relationships::Migration),
            Box::new(m0007_patient_id_hashes::Migration),
            Box::new(m0008_organization_deletion::Migration),
            Box::new(m0009_audit::Migration),
            Box::new(m0010_alerts::Migration),
            Box::new(m0011_audit_chain_horizon::Migration),
            Box::new(m0012_kill_switch::Migration),
            Box::new(m0013_care_assignment_lookup::Migration),
            Box::new(m0014_appointments::Migration),
            Box::new(m0015_calendar_feeds::Migration),
            Box::new(m0016_medications::Migration),
            Box::new(m0017_consultations::Migration),
            Box::new(m0018_verification::Migration),
            Box::new(m0019_assistant::Migration),
            Box::new(m0020_patient_sex::Migration),
            Box::new(m0021_credentials_hardening::Migration),
            Box::new(m0022_audit_witness::Migration),
            Box::new(m0024_assistant_conversations::Migration),
            Box::new(m0026_verification_settings::Migration),
            Box::new(m0027_audit_partitions::Migration),
            Box::new(m0028_subject_standing::Migration),
            Box::new(m0029_telephony::Migration),
            Box::new(m0030_voicemail::Migration),
            Box::new(m0031_reminder_calls::Migration),
            Box::new(m0032_backend_services::Migration),
            Box::new(m0033_bulk_exports::Migration),
            Box::new(m0034_queue_pruning::Migration),
            Box::new(m0035_export_lease::Migration),
        ]
    }
}

/// Runs `sql`, then `grants` (with `{app}` standing for [`APP_ROLE`]), on
/// PostgreSQL only: what SQLite has no counterpart for (functions,
/// partitions, row-level security, roles).
pub(crate) async fn postgres_only(
    manager: &SchemaManager<'_>,
    sql: &str,
    grants: &str,
) -> Result<(), DbErr> {
    on_postgres(manager, sql).await?;
    on_postgres(manager, grants).await
}

/// Runs `sql`, written for both backends (`timestamptz`, `bytea` and the
/// like are column types SQLite accepts).
pub(crate) async fn on_both(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::ConnectionTrait as _;
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

/// Runs `sql` on both backends, then `grants` (with `{app}` standing for
/// [`APP_ROLE`]) on PostgreSQL only: a new table or column and the app
/// role's access to it.
pub(crate) async fn with_grants(
    manager: &SchemaManager<'_>,
    sql: &str,
    grants: &str,
) -> Result<(), DbErr> {
    on_both(manager, sql).await?;
    on_postgres(manager, grants).await
}

/// Runs `sql` (with `{app}` standing for [`APP_ROLE`]) on PostgreSQL only:
/// grants and row-level security, which SQLite has no counterpart for.
pub(crate) async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait as _, DbBackend};
    let db = manager.get_connection();
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(&sql.replace("{app}", APP_ROLE))
            .await?;
    }
    Ok(())
}

/// Runs `sql` (table definitions) and, on PostgreSQL, puts each of
/// `tenant_tables` under forced row-level security for the app role.
pub(crate) async fn create_tenant_tables(
    manager: &SchemaManager<'_>,
    sql: &str,
    tenant_tables: &[&str],
) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait as _, DbBackend};
    let db = manager.get_connection();
    db.execute_unprepared(sql).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        for table in tenant_tables {
            db.execute_unprepared(&tenant_table_sql(table)).await?;
        }
    }
    Ok(())
}

/// SQL that puts `table` under forced row-level security for the current
/// `app.org_id` and grants the app role row access. An unset or empty
/// setting matches nothing.
pub fn tenant_table_sql(table: &str) -> String {
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
         CREATE POLICY {table}_tenant_isolation ON {table}
           USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
           WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
         GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE};"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migration's name is what `seaql_migrations` records as applied: a
    /// renamed one would run again on every existing database.
    #[test]
    fn migration_names_are_their_file_names_and_never_change() {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|migration| migration.name().to_owned())
            .collect();
        let expected = [
            "m0001_organizations_patients",
            "m0002_local_accounts",
            "m0003_password_resets",
            "m0004_totp",
            "m0005_service_keys",
            "m0006_care_relationships",
            "m0007_patient_id_hashes",
            "m0008_organization_deletion",
            "m0009_audit",
            "m0010_alerts",
            "m0011_audit_chain_horizon",
            "m0012_kill_switch",
            "m0013_care_assignment_lookup",
            "m0014_appointments",
            "m0015_calendar_feeds",
            "m0016_medications",
            "m0017_consultations",
            "m0018_verification",
            "m0019_assistant",
            "m0020_patient_sex",
            "m0021_credentials_hardening",
            "m0022_audit_witness",
            "m0024_assistant_conversations",
            "m0026_verification_settings",
            "m0027_audit_partitions",
            "m0028_subject_standing",
            "m0029_telephony",
            "m0030_voicemail",
            "m0031_reminder_calls",
            "m0032_backend_services",
            "m0033_bulk_exports",
            "m0034_queue_pruning",
            "m0035_export_lease",
        ];
        assert_eq!(names, expected);
    }
}
