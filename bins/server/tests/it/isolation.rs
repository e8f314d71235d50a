//! A token of org A never reads, changes, deletes or lists org B's patients.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, patient, problem, spawn_app};

async fn other_org(app: &TestApp) {
    let a = app.org().await;
    let b = app.org().await;
    let a_token = app.token(&a, Role::Admin);
    let b_token = app.token(&b, Role::Admin);
    let b_patient = app.new_patient(&b_token, "Bea").await;
    let before = app.all_patients(&b_token).await;

    let path = format!("/api/v1/patients/{b_patient}");
    problem(app.get(&path, &a_token).await, 404).await;
    // Recorded in A's trail (in the read's own transaction).
    let attempts = || async {
        let trail = crate::attack::kit::security_trail(app, &a).await;
        crate::attack::kit::of(&trail, "security.cross_tenant_attempt").len()
    };
    assert_eq!(
        attempts().await,
        1,
        "a cross-tenant attempt is a security event"
    );
    // An id that exists nowhere is just a 404.
    problem(
        app.get(
            &format!("/api/v1/patients/{}", uuid::Uuid::now_v7()),
            &a_token,
        )
        .await,
        404,
    )
    .await;
    assert_eq!(attempts().await, 1);
    let patch = app
        .patch(&path, &a_token, &json!({ "given_name": "Mallory" }))
        .await;
    problem(patch, 404).await;
    let delete = app.delete(&path, &a_token).await;
    problem(delete, 404).await;
    assert!(
        app.all_patients(&a_token).await.is_empty(),
        "A lists nothing of B's"
    );
    let filtered: Value = app
        .get("/api/v1/patients?member_id=M-100", &a_token)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(filtered["items"], json!([]));

    assert_eq!(
        app.all_patients(&b_token).await,
        before,
        "B's data is unchanged"
    );
}
on_both_backends!(other_org_cannot_read_patch_delete_or_list, other_org);

async fn foreign_cursor(app: &TestApp) {
    let a = app.org().await;
    let b = app.org().await;
    let a_token = app.token(&a, Role::Admin);
    let b_token = app.token(&b, Role::Admin);
    for i in 0..3 {
        app.new_patient(&b_token, &format!("B{i}")).await;
    }
    let page: Value = app
        .get("/api/v1/patients?limit=1", &b_token)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
    assert!(!cursor.is_empty());
    // B's own cursor works for B...
    let next = app
        .get(
            &format!("/api/v1/patients?limit=1&cursor={cursor}"),
            &b_token,
        )
        .await;
    assert_eq!(next.status(), 200);
    // ...and is refused for A, never a peek into B's rows.
    let body = problem(
        app.get(
            &format!("/api/v1/patients?limit=1&cursor={cursor}"),
            &a_token,
        )
        .await,
        400,
    )
    .await;
    assert_eq!(body["detail"], "invalid cursor");
    // Tampered cursors are refused too.
    let mut tampered = cursor.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap_or_default();
    problem(
        app.get(&format!("/api/v1/patients?cursor={tampered}"), &b_token)
            .await,
        400,
    )
    .await;
}
on_both_backends!(cursor_from_another_org_is_refused, foreign_cursor);

async fn smuggled_owner(app: &TestApp) {
    let a = app.org().await;
    let b = app.org().await;
    let a_token = app.token(&a, Role::Admin);
    let b_token = app.token(&b, Role::Admin);
    for field in ["org_id", "owner", "role", "id", "created_at"] {
        let mut body = patient("Smuggler");
        body[field] = json!(b.id.to_string());
        let res = app.create_patient(&a_token, &body).await;
        let problem = problem(res, 422).await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let id = app.new_patient(&a_token, "Plain").await;
    let patch = app
        .patch(
            &format!("/api/v1/patients/{id}"),
            &a_token,
            &json!({ "org_id": b.id.to_string() }),
        )
        .await;
    problem(patch, 422).await;
    assert!(
        app.all_patients(&b_token).await.is_empty(),
        "nothing landed in B"
    );
    assert_eq!(
        app.all_patients(&a_token).await.len(),
        1,
        "only the plain patient exists in A"
    );
}
on_both_backends!(org_id_in_body_is_rejected_and_not_stored, smuggled_owner);

#[tokio::test]
async fn token_for_an_unknown_org_cannot_write() {
    let Some(app) = spawn_app(Backend::Sqlite, "token_for_an_unknown_org_cannot_write").await
    else {
        return;
    };
    let ghost = crate::support::Org {
        id: carapace_tenancy::OrgId::generate(),
        slug: "ghost".into(),
    };
    let token = app.token(&ghost, Role::Admin);
    // An organization that does not resolve (unknown or deleted) opens
    // nothing: no write, no read.
    let body = problem(app.create_patient(&token, &patient("Nobody")).await, 401).await;
    assert_eq!(body["code"], "invalid_token");
    let body = problem(app.get("/api/v1/patients", &token).await, 401).await;
    assert_eq!(body["code"], "invalid_token");
    app.stop().await;
}
