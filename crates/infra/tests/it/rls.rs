//! Row-level security proved in SQL, connecting as the server's role.

use carapace_clinical::patient::{PatientQuery, PatientRepository, Visibility};
use carapace_infra::SeaPatients;
use carapace_tenancy::TenantContext;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::support::{acc, demographics, new_org, one_connection};

async fn count(conn: &impl ConnectionTrait, sql: &str) -> i64 {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.try_get_by_index::<i64>(0)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Two orgs with two and three patients, written through the repository as
/// the server role. Returns the raw one-connection pool and both contexts.
async fn two_orgs(url: &str) -> (DatabaseConnection, TenantContext, TenantContext) {
    let (raw, db) = one_connection(url).await;
    let repo = SeaPatients::new(db.clone(), crate::support::keys(&db));
    let a = new_org(&db).await;
    let b = new_org(&db).await;
    for (ctx, n) in [(&a, 2), (&b, 3)] {
        for i in 0..n {
            repo.create(&acc(ctx), &demographics(&format!("P{i}"), None), None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    (raw, a, b)
}

#[tokio::test]
async fn server_role_sees_no_rows_without_tenant_setting() {
    let Some(pg) =
        carapace_testkit::postgres("server_role_sees_no_rows_without_tenant_setting").await
    else {
        return;
    };
    let (raw, _a, _b) = two_orgs(&pg.app_url).await;
    assert_eq!(count(&raw, "SELECT count(*) FROM patients").await, 0);
    let rows = raw
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT * FROM patients",
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rows.is_empty());
}

#[tokio::test]
async fn tenant_setting_shows_only_that_orgs_rows() {
    let Some(pg) = carapace_testkit::postgres("tenant_setting_shows_only_that_orgs_rows").await
    else {
        return;
    };
    let (raw, a, b) = two_orgs(&pg.app_url).await;
    for (ctx, expected) in [(&a, 2), (&b, 3)] {
        let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
        tx.execute_unprepared(&format!("SET LOCAL app.org_id = '{}'", ctx.org()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&tx, "SELECT count(*) FROM patients").await, expected);
        let foreign = format!(
            "SELECT count(*) FROM patients WHERE org_id <> '{}'",
            ctx.org()
        );
        assert_eq!(
            count(&tx, &foreign).await,
            0,
            "hand-written SQL sees only its own org"
        );
        tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test]
async fn writes_into_another_org_are_refused() {
    let Some(pg) = carapace_testkit::postgres("writes_into_another_org_are_refused").await else {
        return;
    };
    let (raw, a, b) = two_orgs(&pg.app_url).await;
    let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute_unprepared(&format!("SET LOCAL app.org_id = '{}'", a.org()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let insert = |org: carapace_tenancy::OrgId| {
        format!(
            "INSERT INTO patients (org_id, id, key_version, given_name, family_name, birth_date, name_dob_idx, created_at, updated_at)
             VALUES ('{org}', gen_random_uuid(), 1, '\\x00', '\\x00', '\\x00', '\\x00', now(), now())"
        )
    };
    // The same statement for A's own org is accepted: the refusal below is RLS.
    tx.execute_unprepared(&insert(a.org()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        tx.execute_unprepared(&insert(b.org())).await.is_err(),
        "WITH CHECK refuses B's org_id"
    );
    tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));

    let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute_unprepared(&format!("SET LOCAL app.org_id = '{}'", a.org()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let moved = tx
        .execute_unprepared(&format!("UPDATE patients SET org_id = '{}'", b.org()))
        .await;
    assert!(moved.is_err(), "rows cannot be moved into another org");
    tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn pooled_connection_reused_without_tenant_sees_nothing() {
    let Some(pg) =
        carapace_testkit::postgres("pooled_connection_reused_without_tenant_sees_nothing").await
    else {
        return;
    };
    let (raw, db) = one_connection(&pg.app_url).await;
    let repo = SeaPatients::new(db.clone(), crate::support::keys(&db));
    let a = new_org(&db).await;
    repo.create(&acc(&a), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The repository's transaction ran on the pool's only connection...
    let page = repo
        .list(
            &acc(&a),
            &PatientQuery {
                visibility: Visibility::Organization,
                ..PatientQuery::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.items.len(), 1);
    // ...and the next user of that connection, with no tenant, sees nothing.
    assert_eq!(count(&raw, "SELECT count(*) FROM patients").await, 0);
    let setting = raw
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT coalesce(current_setting('app.org_id', true), '') AS v",
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("row"));
    assert_eq!(
        setting
            .try_get::<String>("", "v")
            .unwrap_or_else(|e| panic!("{e}")),
        ""
    );
}

#[tokio::test]
async fn empty_org_setting_fails_closed() {
    let Some(pg) = carapace_testkit::postgres("empty_org_setting_fails_closed").await else {
        return;
    };
    let (raw, _a, _b) = two_orgs(&pg.app_url).await;
    raw.execute_unprepared("SET app.org_id = ''")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&raw, "SELECT count(*) FROM patients").await, 0);
    raw.execute_unprepared("RESET app.org_id")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A malformed setting is an error, not a match.
    raw.execute_unprepared("SET app.org_id = 'not-a-uuid'")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let malformed = raw
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM patients",
        ))
        .await;
    assert!(malformed.is_err());
    raw.execute_unprepared("RESET app.org_id")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn app_role_cannot_change_the_schema_or_policies() {
    let Some(pg) =
        carapace_testkit::postgres("app_role_cannot_change_the_schema_or_policies").await
    else {
        return;
    };
    let (raw, _db) = one_connection(&pg.app_url).await;
    for sql in [
        "ALTER TABLE patients NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE patients DISABLE ROW LEVEL SECURITY",
        "DROP POLICY patients_tenant_isolation ON patients",
        "CREATE TABLE sneaky (id int)",
        "SET row_security = off; SELECT count(*) FROM patients",
    ] {
        let r = raw.execute_unprepared(sql).await;
        if sql.starts_with("SET row_security") {
            // row_security=off makes queries on RLS tables error for non-bypass roles.
            assert!(
                r.is_err() || count(&raw, "SELECT count(*) FROM patients").await == 0,
                "{sql}"
            );
            let _ = raw.execute_unprepared("RESET row_security").await;
        } else {
            assert!(r.is_err(), "{sql} must be refused");
        }
    }
}

#[tokio::test]
async fn a_job_runs_on_one_instance_at_a_time() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(pg) = carapace_testkit::postgres("job_leader_election").await else {
        return;
    };
    // Three instances (three pools) wake up for the same job at once.
    let runs = Arc::new(AtomicUsize::new(0));
    let mut instances = Vec::new();
    for _ in 0..3 {
        let db = carapace_infra::Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let runs = runs.clone();
        instances.push(tokio::spawn(async move {
            db.exclusively("test.job", async {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
        }));
    }
    let mut leaders = 0;
    for i in instances {
        if i.await.unwrap_or_else(|e| panic!("{e}")) {
            leaders += 1;
        }
    }
    assert_eq!(
        (leaders, runs.load(Ordering::SeqCst)),
        (1, 1),
        "the job ran once"
    );
    // Once it is done, the next tick may take it again.
    let db = carapace_infra::Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        db.exclusively("test.job", async {})
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
}

/// The one-statement standing read (`subject_standing`, m0028) binds the
/// tenant for itself only: called inside a transaction bound to another
/// organization it leaves that binding as it was, and called alone it
/// leaves nothing on the pooled connection.
#[tokio::test]
async fn the_standing_function_leaves_the_callers_tenant_as_it_was() {
    let Some(pg) =
        carapace_testkit::postgres("the_standing_function_leaves_the_callers_tenant_as_it_was")
            .await
    else {
        return;
    };
    let (raw, a, b) = two_orgs(&pg.app_url).await;
    let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute_unprepared(&format!(
        "SET LOCAL app.org_id = '{}';
         INSERT INTO subject_blocks (org_id, subject, state, not_before, updated_at)
         VALUES ('{}', 'oidc:nurse', 'locked', now(), now())",
        a.org(),
        a.org()
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let standing = |org: &TenantContext| {
        format!(
            "SELECT count(*) FROM subject_standing('{}', 'oidc:nurse') WHERE standing_state = 'locked'",
            org.org()
        )
    };
    // Inside B's transaction: A's standing is read, B stays bound.
    let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute_unprepared(&format!("SET LOCAL app.org_id = '{}'", b.org()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&tx, &standing(&a)).await, 1);
    assert_eq!(count(&tx, &standing(&b)).await, 0, "B has no such block");
    assert_eq!(
        count(&tx, "SELECT count(*) FROM patients").await,
        3,
        "still bound to B"
    );
    tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    // Alone: nothing stays bound on the connection afterwards.
    assert_eq!(count(&raw, &standing(&a)).await, 1);
    assert_eq!(count(&raw, "SELECT count(*) FROM patients").await, 0);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM subject_blocks").await,
        0,
        "the table itself is still under its policy"
    );
}
