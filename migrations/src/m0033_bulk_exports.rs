use sea_orm_migration::prelude::*;

use crate::create_tenant_tables;

/// FHIR Bulk Data exports: the job (who asked, what, until when its files
/// live) and its NDJSON files, sealed under the organization's data key.
const TABLES: &str = "
CREATE TABLE bulk_exports (
    org_id       uuid        NOT NULL REFERENCES organizations (id),
    id           uuid        NOT NULL,
    requester    text        NOT NULL CHECK (length(requester) BETWEEN 1 AND 255),
    status       text        NOT NULL CHECK (status IN ('in_progress', 'complete', 'failed')),
    request_url  text        NOT NULL CHECK (length(request_url) <= 2048),
    types        text        NOT NULL CHECK (length(types) <= 200),
    since        timestamptz,
    error        text        CHECK (length(error) <= 500),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE TABLE bulk_export_files (
    org_id        uuid    NOT NULL,
    id            uuid    NOT NULL,
    export_id     uuid    NOT NULL,
    n             integer NOT NULL CHECK (n >= 1),
    resource_type text    NOT NULL CHECK (length(resource_type) <= 64),
    lines         bigint  NOT NULL CHECK (lines >= 0),
    key_version   integer NOT NULL,
    body          bytea   NOT NULL,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, export_id, n),
    FOREIGN KEY (org_id, export_id) REFERENCES bulk_exports (org_id, id) ON DELETE CASCADE
);
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    create_tenant_tables(manager, TABLES, &["bulk_exports", "bulk_export_files"]).await
}

crate::forward_only!();
