//! The server's start-up check of its PostgreSQL role and tables.

use carapace_infra::Database;
use carapace_infra::db::PostureProblem;

async fn problems(settings: &carapace_infra::DbSettings) -> Vec<PostureProblem> {
    let db = Database::connect(settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = db
        .posture_problems()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    p
}

#[tokio::test]
async fn app_role_passes_posture_check() {
    let Some(pg) = carapace_testkit::postgres("app_role_passes_posture_check").await else {
        return;
    };
    assert_eq!(problems(&pg.app_settings()).await, vec![]);
}

#[tokio::test]
async fn startup_refuses_superuser_role() {
    let Some(pg) = carapace_testkit::postgres("startup_refuses_superuser_role").await else {
        return;
    };
    // CARAPACE_TEST_PG_URL is a superuser (it creates databases).
    let found = problems(&pg.owner_settings()).await;
    assert!(
        found
            .iter()
            .any(|p| matches!(p, PostureProblem::Superuser(_))),
        "{found:?}"
    );
    assert!(found.iter().any(|p| p.to_string().contains("superuser")));
}

#[tokio::test]
async fn startup_refuses_table_without_forced_rls() {
    let Some(pg) =
        carapace_testkit::postgres_fresh("startup_refuses_table_without_forced_rls", true).await
    else {
        return;
    };
    carapace_testkit::exec_as_owner(&pg, "ALTER TABLE patients NO FORCE ROW LEVEL SECURITY")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        problems(&pg.app_settings()).await,
        vec![PostureProblem::RlsNotForced("patients".into())]
    );
}

#[tokio::test]
async fn startup_refuses_role_that_owns_a_tenant_table_or_table_without_policy() {
    let Some(pg) =
        carapace_testkit::postgres_fresh("startup_refuses_role_that_owns_a_tenant_table", true)
            .await
    else {
        return;
    };
    carapace_testkit::exec_as_owner(
        &pg,
        "CREATE TABLE notes (org_id uuid NOT NULL, body text);
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
         ALTER TABLE patients OWNER TO carapace_app;",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        problems(&pg.app_settings()).await,
        vec![
            PostureProblem::NoPolicy("notes".into()),
            PostureProblem::OwnsTenantTable("patients".into()),
        ]
    );
}
