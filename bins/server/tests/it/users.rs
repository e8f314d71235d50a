//! User administration: admin with MFA, own org only; role changes, locks
//! and deactivation end sessions at once.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::auth::{PASSWORD, login, tokens, user};
use crate::support::{Backend, TestApp, patient, problem, send, spawn_app};

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(&body)).await
}

async fn user_id(app: &TestApp, admin: &str, email: &str) -> String {
    let users: Value = app
        .get("/api/v1/users", admin)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    users
        .as_array()
        .and_then(|a| a.iter().find(|u| u["email"] == email))
        .and_then(|u| u["id"].as_str())
        .unwrap_or_else(|| panic!("{email} not in {users}"))
        .to_owned()
}

async fn administration(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    let session = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let doc_token = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        app.create_patient(&doc_token, &patient("Before"))
            .await
            .status(),
        201
    );

    // Invite: created without a password, code mailed.
    let created = post(
        &app,
        "/api/v1/users",
        &admin,
        json!({"email": "nurse@example.org", "roles": ["viewer"]}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created["roles"], json!(["viewer"]));
    let dup = post(
        &app,
        "/api/v1/users",
        &admin,
        json!({"email": "nurse@example.org", "roles": ["viewer"]}),
    )
    .await;
    problem(dup, 409).await;
    let doc = user_id(&app, &admin, "doc@example.org").await;

    // A role change ends the user's sessions at once.
    let res = send(
        app.http
            .patch(app.url(&format!("/api/v1/users/{doc}")))
            .bearer_auth(&admin)
            .json(&json!({"roles": ["viewer"]})),
    )
    .await;
    assert_eq!(res.status(), 204);
    problem(app.get("/api/v1/patients", &doc_token).await, 401).await;
    let viewer = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let viewer = viewer["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    problem(app.create_patient(&viewer, &patient("After")).await, 403).await;

    // Lock and unlock.
    assert_eq!(
        post(
            &app,
            &format!("/api/v1/users/{doc}/lock"),
            &admin,
            json!({})
        )
        .await
        .status(),
        204
    );
    problem(app.get("/api/v1/patients", &viewer).await, 401).await;
    problem(
        login(&app, &org.slug, "doc@example.org", PASSWORD).await,
        401,
    )
    .await;
    assert_eq!(
        post(
            &app,
            &format!("/api/v1/users/{doc}/unlock"),
            &admin,
            json!({})
        )
        .await
        .status(),
        204
    );
    let again = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let again = again["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Deactivation: the old token is refused, and so is a new login.
    assert_eq!(
        post(
            &app,
            &format!("/api/v1/users/{doc}/deactivate"),
            &admin,
            json!({})
        )
        .await
        .status(),
        204
    );
    problem(app.get("/api/v1/patients", &again).await, 401).await;
    problem(
        login(&app, &org.slug, "doc@example.org", PASSWORD).await,
        401,
    )
    .await;
    let listed: Value = app
        .get("/api/v1/users", &admin)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let doc_view = listed
        .as_array()
        .and_then(|a| a.iter().find(|u| u["id"] == doc.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(doc_view["active"], false);

    // Another org's admin sees nothing and touches nothing.
    let other = app.org().await;
    let other_admin = app.token(&other, Role::Admin);
    assert_eq!(
        app.get("/api/v1/users", &other_admin)
            .await
            .json::<Value>()
            .await
            .unwrap_or_default(),
        json!([])
    );
    problem(
        post(
            &app,
            &format!("/api/v1/users/{doc}/unlock"),
            &other_admin,
            json!({}),
        )
        .await,
        404,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn admin_manages_users_and_changes_end_sessions_on_sqlite() {
    administration(
        Backend::Sqlite,
        "admin_manages_users_and_changes_end_sessions_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn admin_manages_users_and_changes_end_sessions_on_postgres() {
    administration(
        Backend::Postgres,
        "admin_manages_users_and_changes_end_sessions_on_postgres",
    )
    .await;
}

#[tokio::test]
async fn only_admins_with_mfa_administer_users() {
    let Some(app) = spawn_app(Backend::Sqlite, "only_admins_with_mfa_administer_users").await
    else {
        return;
    };
    let org = app.org().await;
    for role in [
        Role::Clinician,
        Role::Staff,
        Role::Viewer,
        Role::Compliance,
        Role::Service,
        Role::Patient,
    ] {
        problem(app.get("/api/v1/users", &app.token(&org, role)).await, 403).await;
    }
    let p = problem(
        app.get("/api/v1/users", &app.token_without_mfa(&org, Role::Admin))
            .await,
        403,
    )
    .await;
    assert_eq!(p["code"], "mfa_required");
    let admin = app.token(&org, Role::Admin);
    for body in [
        json!({"email": "x@example.org", "roles": []}),
        json!({"email": "nope", "roles": ["viewer"]}),
        json!({"email": "x@example.org", "roles": ["root"]}),
    ] {
        problem(post(&app, "/api/v1/users", &admin, body).await, 422).await;
    }
    problem(
        post(
            &app,
            &format!("/api/v1/users/{}/lock", uuid::Uuid::now_v7()),
            &admin,
            json!({}),
        )
        .await,
        404,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn impersonation_is_admin_with_mfa_same_org_non_admin_and_attributed() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "impersonation_is_admin_with_mfa_same_org_non_admin_and_attributed",
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    user(&app, &org, "boss@example.org", Role::Admin).await;
    let doc = user_id(&app, &admin, "doc@example.org").await;
    let boss = user_id(&app, &admin, "boss@example.org").await;

    let no_mfa = app.token_without_mfa(&org, Role::Admin);
    assert_eq!(
        problem(
            post(
                &app,
                &format!("/api/v1/users/{doc}/impersonate"),
                &no_mfa,
                json!({})
            )
            .await,
            403
        )
        .await["code"],
        "mfa_required"
    );
    problem(
        post(
            &app,
            &format!("/api/v1/users/{boss}/impersonate"),
            &admin,
            json!({}),
        )
        .await,
        422,
    )
    .await;
    let other = app.org().await;
    problem(
        post(
            &app,
            &format!("/api/v1/users/{doc}/impersonate"),
            &app.token(&other, Role::Admin),
            json!({}),
        )
        .await,
        404,
    )
    .await;

    let res = post(
        &app,
        &format!("/api/v1/users/{doc}/impersonate"),
        &admin,
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    let claims = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap_or_default();
        serde_json::from_slice::<Value>(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap_or_default(),
        )
        .unwrap_or_default()
    };
    assert_eq!(claims["sub"], doc.as_str());
    assert_eq!(
        claims["act"]["sub"], "test-user",
        "the admin is named in act"
    );
    // Acts with the user's permissions, never the admin's.
    assert_eq!(
        app.create_patient(&token, &patient("Via")).await.status(),
        201
    );
    problem(app.get("/api/v1/users", &token).await, 403).await;
    problem(
        post(
            &app,
            &format!("/api/v1/users/{doc}/impersonate"),
            &token,
            json!({}),
        )
        .await,
        403,
    )
    .await;
    let started = app
        .events
        .of(carapace_audit::SecurityEventKind::ImpersonationStarted);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].detail, format!("as user {doc}"));
    // Deactivating the user ends the impersonation too.
    assert_eq!(
        post(
            &app,
            &format!("/api/v1/users/{doc}/deactivate"),
            &admin,
            json!({})
        )
        .await
        .status(),
        204
    );
    problem(app.get("/api/v1/patients", &token).await, 401).await;
    app.stop().await;
}

async fn practitioners_are_clinicians(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    user(app, &org, "nurse@example.org", Role::Staff).await;
    user(app, &org, "doc@example.org", Role::Clinician).await;
    let nurse = user_id(app, &admin, "nurse@example.org").await;
    let doc = user_id(app, &admin, "doc@example.org").await;
    let p = app.new_patient(&admin, "Cared-for").await;
    let team = format!("/api/v1/patients/{p}/care-team");
    let refused = send(
        app.http
            .post(app.url(&team))
            .bearer_auth(&admin)
            .json(&json!({"subject": nurse})),
    )
    .await;
    assert_eq!(problem(refused, 422).await["errors"][0]["field"], "subject");
    let joined = send(
        app.http
            .post(app.url(&team))
            .bearer_auth(&admin)
            .json(&json!({"subject": doc})),
    )
    .await;
    assert_eq!(joined.status(), 204);
    // Identity-provider subjects are taken as the provider vouches.
    let oidc = send(
        app.http
            .post(app.url(&team))
            .bearer_auth(&admin)
            .json(&json!({"subject": "oidc:abc"})),
    )
    .await;
    assert_eq!(oidc.status(), 204);
}
crate::on_both_backends!(
    only_clinicians_join_care_teams,
    practitioners_are_clinicians
);

/// A user who lost their authenticator: an administrator removes the
/// factor with a reason recorded first; the user's sessions end and they
/// sign in with the password alone, then enrol again. The attempts that
/// must not work do not: no reason, oneself, an identity-provider user,
/// another organization's user, a clinician.
async fn mfa_reset(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let doc = user(&app, &org, "lost@example.org", Role::Clinician).await;
    let session = tokens(login(&app, &org.slug, "lost@example.org", PASSWORD).await).await;
    let access = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let enrolled: Value = post(&app, "/api/v1/auth/mfa/totp/enroll", &access, json!({}))
        .await
        .json()
        .await
        .unwrap_or_default();
    let totp = totp_rs::Totp::from_url(enrolled["otpauth_uri"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let activated = post(
        &app,
        "/api/v1/auth/mfa/totp/activate",
        &access,
        json!({"code": totp.generate(now).to_string()}),
    )
    .await;
    assert_eq!(activated.status(), 200);
    let challenged: Value = login(&app, &org.slug, "lost@example.org", PASSWORD)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(challenged["mfa_required"], true, "{challenged}");

    let reset = format!("/api/v1/users/{doc}/mfa/reset");
    let reason = json!({"reason": "lost phone; identity checked in person, HD-1234"});
    for bad in [
        json!({"reason": "lost"}),
        json!({}),
        json!({"reason": "x".repeat(501)}),
    ] {
        let res = post(&app, &reset, &admin, bad).await;
        assert_eq!(res.status(), 422);
    }
    let clinician = app.token(&org, Role::Clinician);
    problem(post(&app, &reset, &clinician, reason.clone()).await, 403).await;
    let elsewhere = app.token(&app.org().await, Role::Admin);
    problem(post(&app, &reset, &elsewhere, reason.clone()).await, 404).await;
    let issuer_user = "/api/v1/users/oidc:someone/mfa/reset";
    problem(post(&app, issuer_user, &admin, reason.clone()).await, 422).await;
    // Still enrolled after every refusal.
    let still: Value = login(&app, &org.slug, "lost@example.org", PASSWORD)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(still["mfa_required"], true, "{still}");

    let res = post(&app, &reset, &admin, reason.clone()).await;
    assert_eq!(res.status(), 204);
    // The session is over; the password alone signs in; a new factor can
    // be enrolled.
    let refreshed = send(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": session["refresh_token"]})),
    )
    .await;
    assert_eq!(refreshed.status(), 401);
    let again = tokens(login(&app, &org.slug, "lost@example.org", PASSWORD).await).await;
    let fresh = again["access_token"].as_str().unwrap_or_default();
    let res = post(&app, "/api/v1/auth/mfa/totp/enroll", fresh, json!({})).await;
    assert_eq!(res.status(), 200);
    // The reason is in the trail, before the change.
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let trail: Value = app
        .get("/api/v1/audit-events?limit=500", &compliance)
        .await
        .json()
        .await
        .unwrap_or_default();
    let actions: Vec<String> = trail["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e.to_string().contains("mfa_reset"))
        .map(|e| format!("{} {}", e["action"], e["detail"]))
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a.contains("identity checked in person")),
        "{actions:?}"
    );
    assert!(
        actions.len() >= 2,
        "the request and the change: {actions:?}"
    );
}

#[tokio::test]
async fn admins_reset_a_users_lost_second_factor_on_sqlite() {
    mfa_reset(Backend::Sqlite, "users::mfa_reset::sqlite").await;
}

#[tokio::test]
async fn admins_reset_a_users_lost_second_factor_on_postgres() {
    mfa_reset(Backend::Postgres, "users::mfa_reset::postgres").await;
}
