//! Service keys: created by admins (shown once), org-bound, least
//! privilege, revocable, last use recorded.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, patient, problem, send, spawn_app};

async fn create_key(app: &TestApp, admin: &str, body: Value) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/service-keys"))
            .bearer_auth(admin)
            .json(&body),
    )
    .await
}

async fn key_lifecycle(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let org = app.org().await;
    let other = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let clinician = app.token(&org, Role::Clinician);
    app.new_patient(&clinician, "Iris").await;
    app.new_patient(&app.token(&other, Role::Admin), "Other")
        .await;

    let res = create_key(
        &app,
        &admin,
        json!({"name": "voice bot", "roles": ["service", "viewer"]}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    let key = created["key"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("cak_"));
    let id = created["id"].as_str().unwrap_or_default().to_owned();

    // The key reads its own org's patients (viewer), nothing else.
    let listed = app.all_patients(&key).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["given_name"], "Iris");
    problem(app.create_patient(&key, &patient("Nope")).await, 403).await;
    problem(
        send(
            app.http
                .get(app.url("/api/v1/service-keys"))
                .bearer_auth(&key),
        )
        .await,
        403,
    )
    .await;

    // Listing never shows the key; last use is recorded.
    let keys: Value = send(
        app.http
            .get(app.url("/api/v1/service-keys"))
            .bearer_auth(&admin),
    )
    .await
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.as_array().map(Vec::len), Some(1));
    assert!(keys[0].get("key").is_none());
    assert!(keys[0]["last_used_at"].is_string());
    assert!(!keys.to_string().contains(&key));

    // Another org's admin can neither see nor revoke it.
    let other_admin = app.token(&other, Role::Admin);
    let theirs: Value = send(
        app.http
            .get(app.url("/api/v1/service-keys"))
            .bearer_auth(&other_admin),
    )
    .await
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(theirs, json!([]));
    problem(
        app.delete(&format!("/api/v1/service-keys/{id}"), &other_admin)
            .await,
        404,
    )
    .await;

    assert_eq!(
        app.delete(&format!("/api/v1/service-keys/{id}"), &admin)
            .await
            .status(),
        204
    );
    problem(app.get("/api/v1/patients", &key).await, 401).await;
    app.stop().await;
}

#[tokio::test]
async fn service_key_lifecycle_on_sqlite() {
    key_lifecycle(Backend::Sqlite, "service_key_lifecycle_on_sqlite").await;
}

#[tokio::test]
async fn service_key_lifecycle_on_postgres() {
    key_lifecycle(Backend::Postgres, "service_key_lifecycle_on_postgres").await;
}

#[tokio::test]
async fn only_admins_create_keys_and_never_with_admin_roles() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "only_admins_create_keys_and_never_with_admin_roles",
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    let clinician = app.token(&org, Role::Clinician);
    problem(
        create_key(
            &app,
            &clinician,
            json!({"name": "bot", "roles": ["service"]}),
        )
        .await,
        403,
    )
    .await;
    let admin = app.token(&org, Role::Admin);
    for body in [
        json!({"name": "bot", "roles": ["admin"]}),
        json!({"name": "bot", "roles": ["compliance"]}),
        json!({"name": "bot", "roles": []}),
        json!({"name": "", "roles": ["service"]}),
        json!({"name": "bot", "roles": ["service"], "org_id": "x"}),
    ] {
        problem(create_key(&app, &admin, body).await, 422).await;
    }
    for forged in [
        "cak_",
        "cak_AAAA.BBBB",
        "cak_AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        problem(app.get("/api/v1/patients", forged).await, 401).await;
    }
    app.stop().await;
}
