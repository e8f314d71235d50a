//! SMART scopes through a real local issuer, and errors before the handler.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::*;
use crate::support::{Backend, send, spawn_app};

use crate::support::spawn_app_with;
use carapace_testkit::issuer::{AUDIENCE, TestIssuer, TestKey};

async fn scopes_narrow_what_roles_allow(backend: Backend, test: &str) {
    let issuer = TestIssuer::start();
    let url = issuer.url.clone();
    let Some(app) = spawn_app_with(backend, test, move |s| {
        s.oidc_issuer = Some(url);
        s.oidc_audience = Some(AUDIENCE.into());
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let (p, _) = json_of(
        call(&app, "POST", "/fhir/R4/Patient", &admin, Some(&jane("Sam"))).await,
        201,
    )
    .await;
    let id = p["id"].as_str().unwrap_or_default().to_owned();
    let token = |roles: &[&str], scope: Value| {
        let mut claims = issuer.claims(&org.id.to_string(), roles);
        claims["scope"] = scope;
        claims["amr"] = json!(["pwd", "mfa"]);
        issuer.sign(TestKey::Rsa1, &claims)
    };
    // Read only: reading works on both surfaces; searching, writing and
    // everything else the admin role would allow does not.
    let read_only = token(&["admin"], json!("openid user/Patient.r"));
    json_of(
        call(
            &app,
            "GET",
            &format!("/fhir/R4/Patient/{id}"),
            &read_only,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/patients/{id}"), &read_only)
            .await
            .status(),
        200
    );
    let oo = outcome(
        call(&app, "GET", "/fhir/R4/Patient", &read_only, None).await,
        403,
    )
    .await;
    assert_eq!(
        oo["issue"][0]["details"]["coding"][0]["code"],
        "insufficient_scope"
    );
    assert_eq!(app.get("/api/v1/patients", &read_only).await.status(), 403);
    // Nor an appointment's change, nor a consent.
    for (method, path) in [
        ("PUT", format!("/fhir/R4/Appointment/{id}")),
        ("GET", format!("/fhir/R4/Consent?patient=Patient/{id}")),
    ] {
        let body = json!({"resourceType": "Appointment"});
        let res = call(&app, method, &path, &read_only, Some(&body)).await;
        let oo = outcome(res, 403).await;
        assert_eq!(
            oo["issue"][0]["details"]["coding"][0]["code"], "insufficient_scope",
            "{path}"
        );
    }
    outcome(
        call(
            &app,
            "POST",
            "/fhir/R4/Patient",
            &read_only,
            Some(&jane("No")),
        )
        .await,
        403,
    )
    .await;
    outcome(
        call(
            &app,
            "PUT",
            &format!("/fhir/R4/Patient/{id}"),
            &read_only,
            Some(&p),
        )
        .await,
        403,
    )
    .await;
    outcome(
        call(
            &app,
            "DELETE",
            &format!("/fhir/R4/Patient/{id}"),
            &read_only,
            None,
        )
        .await,
        403,
    )
    .await;
    assert_eq!(app.get("/api/v1/users", &read_only).await.status(), 403);
    assert_eq!(
        app.get("/api/v1/audit-events", &read_only).await.status(),
        403
    );
    // Scopes never widen: a viewer with every scope still cannot write.
    let viewer = token(&["viewer"], json!("system/*.cruds"));
    outcome(
        call(&app, "POST", "/fhir/R4/Patient", &viewer, Some(&jane("No"))).await,
        403,
    )
    .await;
    json_of(
        call(
            &app,
            "GET",
            &format!("/fhir/R4/Patient/{id}"),
            &viewer,
            None,
        )
        .await,
        200,
    )
    .await;
    // A patient/ scope reaches the user's own record only, whatever the
    // role: this staff user has none.
    let own = token(&["staff"], json!("launch/patient patient/*.rs"));
    outcome(
        call(&app, "GET", &format!("/fhir/R4/Patient/{id}"), &own, None).await,
        403,
    )
    .await;
    assert!(
        all_pages(&app, "/fhir/R4/Patient", &own)
            .await
            .concat()
            .is_empty()
    );
    // Scopes Carapace does not honour grant nothing.
    let odd = token(
        &["admin"],
        json!("user/Patient.rs?identifier=x user/Observation.rs"),
    );
    outcome(
        call(&app, "GET", &format!("/fhir/R4/Patient/{id}"), &odd, None).await,
        403,
    )
    .await;
    // A malformed scope claim is a bad token.
    let bad = token(&["admin"], json!(["user/Patient.r"]));
    outcome(
        call(&app, "GET", &format!("/fhir/R4/Patient/{id}"), &bad, None).await,
        401,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn scopes_narrow_what_roles_allow_on_sqlite() {
    scopes_narrow_what_roles_allow(Backend::Sqlite, "fhir_scopes_narrow_on_sqlite").await;
}

#[tokio::test]
async fn scopes_narrow_what_roles_allow_on_postgres() {
    scopes_narrow_what_roles_allow(Backend::Postgres, "fhir_scopes_narrow_on_postgres").await;
}

#[tokio::test]
async fn errors_before_the_handler_are_operation_outcomes_too() {
    let Some(app) = spawn_app(Backend::Sqlite, "fhir_errors_before_the_handler").await else {
        return;
    };
    let org = app.org().await;
    let clinician = app.token(&org, Role::Clinician);
    let res = send(
        app.http
            .post(app.url("/fhir/R4/Patient"))
            .bearer_auth(&clinician)
            .header("content-type", FHIR)
            .body(vec![b' '; 2 * 1024 * 1024]),
    )
    .await;
    outcome(res, 413).await;
    let res = send(
        app.http
            .patch(app.url("/fhir/R4/Patient"))
            .bearer_auth(&clinician),
    )
    .await;
    let status = res.status().as_u16();
    assert!(matches!(status, 404 | 405), "{status}");
    outcome(res, status).await;
    app.stop().await;
}
