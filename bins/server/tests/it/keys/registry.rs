use super::*;

/// Every (table, column) that can hold bytes, after all migrations.
async fn byte_columns(conn: &sea_orm::DatabaseConnection) -> Vec<(String, String)> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type = 'bytea' ORDER BY 1, 2"
        }
        _ => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND (lower(p.type) LIKE '%blob%' OR lower(p.type) = 'bytea' \
             OR p.type = '') AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2"
        }
    };
    conn.query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "t").unwrap_or_default(),
                r.try_get::<String>("", "c").unwrap_or_default(),
            )
        })
        .collect()
}

/// Every registered (table, column): sealed columns and blind indexes.
fn registered() -> Vec<(&'static str, &'static str)> {
    REGISTRY
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(|c| (t.table, c.column))
                .chain(t.blind_indexes.iter().map(|i| (t.table, i.column)))
        })
        .collect()
}

/// The byte columns of the schema that are neither registered nor
/// allowed.
async fn unregistered(conn: &sea_orm::DatabaseConnection) -> Vec<String> {
    let registered = registered();
    byte_columns(conn)
        .await
        .iter()
        .filter(|(t, c)| {
            !registered.contains(&(t.as_str(), c.as_str()))
                && !NOT_DATA_KEY_CIPHERTEXT
                    .iter()
                    .any(|(at, ac, _)| at == t && ac == c)
        })
        .map(|(t, c)| format!("{t}.{c}"))
        .collect()
}

async fn schema_scan(conn: &sea_orm::DatabaseConnection) {
    let found = byte_columns(conn).await;
    assert!(
        found
            .iter()
            .any(|(t, c)| t == "patients" && c == "given_name"),
        "the scan sees the schema: {found:?}"
    );
    let registered = registered();
    let missing = unregistered(conn).await;
    assert!(
        missing.is_empty(),
        "columns that can hold a ciphertext are in neither the registry of sealed columns \
         (crates/infra/src/sealed.rs) nor the allow-list: {missing:?}"
    );
    // And the registry names real columns (and every allow-listed one is
    // still there, so the list does not rot).
    for (t, c) in registered
        .iter()
        .copied()
        .chain(NOT_DATA_KEY_CIPHERTEXT.iter().map(|(t, c, _)| (*t, *c)))
    {
        assert!(
            found.iter().any(|(ft, fc)| ft == t && fc == c),
            "{t}.{c} is registered or allowed but is not a byte column"
        );
    }
}

#[tokio::test]
async fn every_column_that_can_hold_a_ciphertext_is_registered_sqlite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}/carapace.db", dir.path().display());
    let db =
        carapace_infra::Database::connect(&carapace_infra::DbSettings::new(url.clone().into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    db.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    let conn = sea_orm::Database::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    schema_scan(&conn).await;
    // A sealed column added without registering it is caught.
    conn.execute_unprepared("ALTER TABLE appointments ADD COLUMN notes bytea")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unregistered(&conn).await, vec!["appointments.notes"]);
}

#[tokio::test]
async fn every_column_that_can_hold_a_ciphertext_is_registered_postgres() {
    let Some(pg) =
        carapace_testkit::postgres("every_column_that_can_hold_a_ciphertext_is_registered").await
    else {
        return;
    };
    let conn = sea_orm::Database::connect(pg.owner_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    schema_scan(&conn).await;
}
