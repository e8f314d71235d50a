use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::{APP_ROLE, tenant_table_sql};

const TABLES: &str = "
CREATE TABLE organizations (
    id          uuid        PRIMARY KEY,
    slug        text        NOT NULL UNIQUE CHECK (length(slug) BETWEEN 3 AND 63),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL
);
CREATE TABLE org_keys (
    org_id            uuid        NOT NULL REFERENCES organizations (id),
    version           integer     NOT NULL CHECK (version > 0),
    wrapped_dek       bytea       NOT NULL,
    wrapped_index_key bytea       NOT NULL,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (org_id, version)
);
CREATE TABLE patients (
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    id            uuid        NOT NULL,
    key_version   integer     NOT NULL,
    given_name    bytea       NOT NULL,
    family_name   bytea       NOT NULL,
    birth_date    bytea       NOT NULL,
    member_id     bytea,
    phone         bytea,
    email         bytea,
    member_id_idx bytea,
    name_dob_idx  bytea       NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX patients_member_id_idx ON patients (org_id, member_id_idx) WHERE member_id_idx IS NOT NULL;
CREATE INDEX patients_name_dob_idx ON patients (org_id, name_dob_idx);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    match db.get_database_backend() {
        DbBackend::Postgres => {
            db.execute_unprepared(&format!(
                "DO $$ BEGIN
                   CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                 END $$;
                 DO $$ BEGIN
                   EXECUTE format('GRANT CONNECT ON DATABASE %I TO {APP_ROLE}', current_database());
                   EXECUTE format('GRANT USAGE ON SCHEMA %I TO {APP_ROLE}', current_schema());
                 END $$;"
            ))
            .await?;
            db.execute_unprepared(TABLES).await?;
            db.execute_unprepared(&format!(
                "GRANT SELECT, INSERT ON organizations TO {APP_ROLE};
                 GRANT SELECT ON seaql_migrations TO {APP_ROLE};"
            ))
            .await?;
            db.execute_unprepared(&tenant_table_sql("patients")).await?;
            db.execute_unprepared(&tenant_table_sql("org_keys")).await?;
        }
        _ => {
            // SQLite: same shape; uuids as blobs, times as text.
            db.execute_unprepared(TABLES).await?;
        }
    }
    Ok(())
}

crate::forward_only!();
