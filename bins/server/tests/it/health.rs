use serde_json::Value;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, problem, spawn_app};

async fn ready_and_live(app: &TestApp) {
    let live = app.get_public("/health/live").await;
    assert_eq!(live.status(), 200);
    let res = app.get_public("/health/ready").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"][0]["status"], "ok");
    assert_eq!(body["checks"][1]["status"], "ok");
}
on_both_backends!(
    ready_is_200_when_database_and_migrations_are_current,
    ready_and_live
);

#[tokio::test]
async fn ready_is_503_naming_migrations_when_pending() {
    let test = "ready_is_503_naming_migrations_when_pending";
    // The server role on a database nobody migrated yet: it starts (it may
    // not migrate) but is not ready.
    let Some((app, _pg, _)) = crate::support::spawn_on_fresh_postgres(test, false).await else {
        return;
    };
    let res = app.get_public("/health/ready").await;
    let body = problem(res, 503).await;
    assert_eq!(body["code"], "not_ready");
    let detail = body["detail"].as_str().unwrap_or_default();
    let pending: Option<u32> = detail
        .strip_prefix("failed checks: migrations: ")
        .and_then(|rest| rest.strip_suffix(" pending"))
        .and_then(|n| n.parse().ok());
    assert!(pending.is_some_and(|n| n >= 14), "{detail}");
    app.stop().await;
}

#[tokio::test]
async fn ready_is_503_naming_the_database_when_it_is_gone() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "ready_is_503_naming_the_database_when_it_is_gone",
    )
    .await
    else {
        return;
    };
    // Closing the shared pool makes every later acquire fail, as a lost
    // database would.
    app.db.clone().close().await;
    let res = app.get_public("/health/ready").await;
    let body = problem(res, 503).await;
    assert_eq!(
        body["detail"],
        "failed checks: database: unreachable, migrations: not checked"
    );
    let live = app.get_public("/health/live").await;
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the database"
    );
    app.stop().await;
}

#[tokio::test]
async fn openapi_and_docs_are_served_from_the_binary() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "openapi_and_docs_are_served_from_the_binary",
    )
    .await
    else {
        return;
    };
    let spec: Value = app
        .get_public("/openapi.json")
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(spec["paths"]["/api/v1/patients"]["post"].is_object());
    assert!(spec["paths"]["/api/v1/patients/{id}"]["patch"].is_object());
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    let redirect = app.get_public("/docs").await;
    assert_eq!(redirect.status(), 308);
    let page = app.get_public("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap_or_default().contains("swagger"));
    let init = app.get_public("/docs/swagger-initializer.js").await;
    let js = init.text().await.unwrap_or_default();
    assert!(js.contains("/openapi.json"), "{js}");
    assert!(js.contains("\"validatorUrl\": \"none\""), "{js}");
    app.stop().await;
}
