//! Local accounts over HTTP: login, lockout, refresh rotation and reuse,
//! logout, JWKS (per-address limits: `limits.rs`).

use carapace_auth::local::{AccountStore as _, Email, hash_password};
use carapace_auth::{Role, RoleSet};
use carapace_infra::accounts::SeaAccounts;
use carapace_tenancy::{SubjectId, TenantContext};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{Backend, Org, TestApp, patient, problem, send, spawn_app};

mod mfa;
mod sessions;

use mfa::bearer_post;

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The origin of the browser app in the cookie-session tests.
pub(crate) const APP_ORIGIN: &str = "https://app.example.org";

/// Creates a local account with [`PASSWORD`]; returns its id.
pub(crate) async fn user(app: &TestApp, org: &Org, email: &str, role: Role) -> String {
    let ctx = TenantContext::new(
        org.id,
        SubjectId::parse("test").unwrap_or_else(|e| panic!("{e}")),
    );
    let hash =
        hash_password(&SecretString::from(PASSWORD.to_owned())).unwrap_or_else(|e| panic!("{e}"));
    SeaAccounts::new(app.db.clone())
        .create(
            &ctx,
            &Email::parse(email).unwrap_or_else(|| panic!("email")),
            Some(hash),
            RoleSet::of(&[role]),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id
        .to_string()
}

pub(crate) async fn login(
    app: &TestApp,
    org: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"org": org, "email": email, "password": password})),
    )
    .await
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).json(&body)).await
}

pub(crate) async fn tokens(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 200);
    res.json().await.unwrap_or_else(|e| panic!("{e}"))
}

async fn setup(test: &str, backend: Backend) -> Option<(TestApp, Org)> {
    let app = spawn_app(backend, test).await?;
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    Some((app, org))
}

async fn login_round_trip(backend: Backend, test: &str) {
    let Some((app, org)) = setup(test, backend).await else {
        return;
    };
    let t = tokens(login(&app, &org.slug, "Doc@Example.org", PASSWORD).await).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let access = t["access_token"].as_str().unwrap_or_default();
    let id = app.new_patient(access, "Lena").await;
    assert_eq!(
        app.get(&format!("/api/v1/patients/{id}"), access)
            .await
            .status(),
        200
    );

    // The token's kid is published.
    let kid = {
        use base64::Engine as _;
        let header = access.split('.').next().unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap_or_default();
        serde_json::from_slice::<Value>(&bytes).unwrap_or_default()["kid"].clone()
    };
    let jwks: Value = app
        .get_public("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks["keys"][0]["kid"], kid);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    app.stop().await;
}

#[tokio::test]
async fn local_login_gives_tokens_that_work_on_the_api_on_sqlite() {
    login_round_trip(
        Backend::Sqlite,
        "local_login_gives_tokens_that_work_on_the_api_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn local_login_gives_tokens_that_work_on_the_api_on_postgres() {
    login_round_trip(
        Backend::Postgres,
        "local_login_gives_tokens_that_work_on_the_api_on_postgres",
    )
    .await;
}

#[tokio::test]
async fn wrong_password_unknown_user_and_unknown_org_get_the_same_401() {
    let Some((app, org)) = setup(
        "wrong_password_unknown_user_and_unknown_org_get_the_same_401",
        Backend::Sqlite,
    )
    .await
    else {
        return;
    };
    let mut bodies = Vec::new();
    for (o, e, p) in [
        (org.slug.as_str(), "doc@example.org", "not the password!"),
        (org.slug.as_str(), "nobody@example.org", PASSWORD),
        ("no-such-org", "doc@example.org", PASSWORD),
        (org.slug.as_str(), "not-an-email", PASSWORD),
    ] {
        let res = login(&app, o, e, p).await;
        assert!(res.headers().contains_key("www-authenticate"));
        let mut body = problem(res, 401).await;
        body.as_object_mut().map(|m| m.remove("request_id"));
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(bodies[0]["code"], "invalid_credentials");
    app.stop().await;
}

#[tokio::test]
async fn five_failures_lock_the_account() {
    let Some((app, org)) = setup("five_failures_lock_the_account", Backend::Sqlite).await else {
        return;
    };
    for _ in 0..5 {
        problem(
            login(&app, &org.slug, "doc@example.org", "wrong wrong wrong").await,
            401,
        )
        .await;
    }
    problem(
        login(&app, &org.slug, "doc@example.org", PASSWORD).await,
        401,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    // A spent refresh token presented again is a reuse at once (the grace
    // window for two tabs is the attack tests' subject).
    let Some(app) = crate::support::spawn_app_with(
        Backend::Sqlite,
        "refresh_rotates_and_reuse_revokes_the_family",
        |s| s.refresh_grace_secs = 0,
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    let first = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let second = tokens(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await,
    )
    .await;
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    problem(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await,
        401,
    )
    .await;
    problem(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": second["refresh_token"]}),
        )
        .await,
        401,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session() {
    let Some((app, org)) = setup("logout_ends_the_session", Backend::Sqlite).await else {
        return;
    };
    let t = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let out = post(
        &app,
        "/api/v1/auth/logout",
        json!({"refresh_token": t["refresh_token"]}),
    )
    .await;
    assert_eq!(out.status(), 204);
    problem(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await,
        401,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn token_kinds_are_not_interchangeable() {
    let Some((app, org)) = setup("token_kinds_are_not_interchangeable", Backend::Sqlite).await
    else {
        return;
    };
    let t = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let refresh = t["refresh_token"].as_str().unwrap_or_default();
    problem(app.create_patient(refresh, &patient("Nope")).await, 401).await;
    problem(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": t["access_token"]}),
        )
        .await,
        401,
    )
    .await;
    let dev = app.token(&org, Role::Admin);
    problem(
        post(&app, "/api/v1/auth/refresh", json!({"refresh_token": dev})).await,
        401,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_share_one_successor() {
    let Some((app, org)) = setup(
        "concurrent_refreshes_of_one_token_share_one_successor",
        Backend::Postgres,
    )
    .await
    else {
        return;
    };
    let t = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let body = json!({"refresh_token": t["refresh_token"]});
    let (a, b) = tokio::join!(
        post(&app, "/api/v1/auth/refresh", body.clone()),
        post(&app, "/api/v1/auth/refresh", body)
    );
    // Two tabs at once: both stay signed in, with one successor between
    // them (one rotation, never two families).
    let (a, b) = (tokens(a).await, tokens(b).await);
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert_ne!(a["refresh_token"], t["refresh_token"]);
    tokens(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": a["refresh_token"]}),
        )
        .await,
    )
    .await;
    app.stop().await;
}

/// The reset code in the newest outbox mail, waiting up to 5 s for it.
async fn mailed_code(app: &TestApp, expected_files: usize) -> String {
    let outbox = app.data_dir.join("outbox");
    for _ in 0..100 {
        let files: Vec<_> = std::fs::read_dir(&outbox)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if files.len() >= expected_files {
            let mut files = files;
            files.sort();
            let text = std::fs::read_to_string(files.last().unwrap_or_else(|| panic!("file")))
                .unwrap_or_default();
            let start = text
                .find("crr_")
                .unwrap_or_else(|| panic!("no code in {text}"));
            return text[start..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no mail in {}", outbox.display());
}

fn outbox_count(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir.join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn password_reset_is_202_either_way_and_the_code_only_goes_by_mail() {
    let Some((app, org)) = setup(
        "password_reset_is_202_either_way_and_the_code_only_goes_by_mail",
        Backend::Sqlite,
    )
    .await
    else {
        return;
    };
    let mut bodies = Vec::new();
    for email in ["nobody@example.org", "doc@example.org"] {
        let res = post(
            &app,
            "/api/v1/auth/password-reset/request",
            json!({"org": org.slug, "email": email}),
        )
        .await;
        assert_eq!(res.status(), 202);
        let text = res.text().await.unwrap_or_default();
        assert!(
            !text.contains("crr_"),
            "the code never appears in a response"
        );
        bodies.push(text);
    }
    assert_eq!(
        bodies[0], bodies[1],
        "same body whether or not the account exists"
    );
    let code = mailed_code(&app, 1).await;
    assert!(code.starts_with("crr_"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(outbox_count(&app), 1, "no mail for the unknown account");
    app.stop().await;
}

async fn reset_flow(backend: Backend, test: &str) {
    let Some((app, org)) = setup(test, backend).await else {
        return;
    };
    let session = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    post(
        &app,
        "/api/v1/auth/password-reset/request",
        json!({"org": org.slug, "email": "doc@example.org"}),
    )
    .await;
    let code = mailed_code(&app, 1).await;

    let weak = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": code, "new_password": "password1234"}),
    )
    .await;
    let p = problem(weak, 422).await;
    assert_eq!(p["errors"][0]["field"], "password");
    let new_password = "a brand new long passphrase";
    let ok = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": code, "new_password": new_password}),
    )
    .await;
    assert_eq!(ok.status(), 204);
    let again = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": code, "new_password": "yet another passphrase"}),
    )
    .await;
    problem(again, 401).await;

    problem(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": session["refresh_token"]}),
        )
        .await,
        401,
    )
    .await;
    problem(
        login(&app, &org.slug, "doc@example.org", PASSWORD).await,
        401,
    )
    .await;
    tokens(login(&app, &org.slug, "doc@example.org", new_password).await).await;
    // A reset code is not a bearer token either.
    problem(app.create_patient(&code, &patient("Nope")).await, 401).await;
    app.stop().await;
}

#[tokio::test]
async fn reset_code_is_single_use_and_ends_every_session_on_sqlite() {
    reset_flow(
        Backend::Sqlite,
        "reset_code_is_single_use_and_ends_every_session_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn reset_code_is_single_use_and_ends_every_session_on_postgres() {
    reset_flow(
        Backend::Postgres,
        "reset_code_is_single_use_and_ends_every_session_on_postgres",
    )
    .await;
}

/// `name=value` pairs from a response's Set-Cookie headers, with the
/// attributes of each, checked for the `__Host-` rules.
pub(crate) fn set_cookies(res: &reqwest::Response) -> Vec<(String, String, String)> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|line| {
            let (pair, attrs) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                name.trim().to_owned(),
                value.trim().to_owned(),
                attrs.to_owned(),
            )
        })
        .collect()
}

pub(crate) fn cookie_header(cookies: &[(String, String, String)]) -> String {
    cookies
        .iter()
        .map(|(n, v, _)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}
