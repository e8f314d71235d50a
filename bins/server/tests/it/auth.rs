//! Local accounts over HTTP: login, lockout, refresh rotation and reuse,
//! logout, JWKS (per-address limits: `limits.rs`).

use carapace_auth::local::{AccountStore as _, Email, hash_password};
use carapace_auth::{Role, RoleSet};
use carapace_infra::accounts::SeaAccounts;
use carapace_tenancy::{SubjectId, TenantContext};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{Backend, Org, TestApp, patient, problem, send, spawn_app};

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

fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

async fn bearer_post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(&body)).await
}

async fn mfa_login(app: &TestApp, org: &Org) -> String {
    let res = login(app, &org.slug, "doc@example.org", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    body["mfa_token"].as_str().unwrap_or_default().to_owned()
}

async fn mfa_flow(backend: Backend, test: &str) {
    let Some((app, org)) = setup(test, backend).await else {
        return;
    };
    let session = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let access = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let enrolled: Value = bearer_post(&app, "/api/v1/auth/mfa/totp/enroll", &access, json!({}))
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uri = enrolled["otpauth_uri"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        uri.starts_with("otpauth://totp/Carapace:doc%40example.org?"),
        "{uri}"
    );
    let totp = totp_rs::Totp::from_url(&uri).unwrap_or_else(|e| panic!("{e:?}"));

    // The seed is stored sealed, never as itself.
    let ctx = TenantContext::new(
        org.id,
        SubjectId::parse("test").unwrap_or_else(|e| panic!("{e}")),
    );
    let user_id = carapace_auth::local::UserId::from_uuid(
        uuid::Uuid::parse_str(claims_of(&access)["sub"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let stored = carapace_auth::local::mfa::MfaStore::totp_state(
        &SeaAccounts::new(app.db.clone()),
        &ctx,
        user_id,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|| panic!("pending enrolment"));
    let seed = totp.secret().as_bytes().to_vec();
    assert!(
        !stored
            .sealed_seed
            .windows(seed.len())
            .any(|w| w == seed.as_slice()),
        "seed is encrypted at rest"
    );

    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    problem(
        bearer_post(
            &app,
            "/api/v1/auth/mfa/totp/activate",
            &access,
            json!({"code": "000000"}),
        )
        .await,
        401,
    )
    .await;
    let activated: Value = bearer_post(
        &app,
        "/api/v1/auth/mfa/totp/activate",
        &access,
        json!({"code": totp.generate(now).to_string()}),
    )
    .await
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let recovery: Vec<String> = activated["recovery_codes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(recovery.len(), 10);
    problem(
        bearer_post(&app, "/api/v1/auth/mfa/totp/enroll", &access, json!({})).await,
        409,
    )
    .await;

    // Login now stops at a challenge; the challenge is not a bearer token.
    let challenge = mfa_login(&app, &org).await;
    problem(app.create_patient(&challenge, &patient("Nope")).await, 401).await;
    // The activation code's step is spent: replay refused.
    let replay = post(
        &app,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": challenge, "code": totp.generate(now).to_string()}),
    )
    .await;
    problem(replay, 401).await;
    let next = totp.generate(now + 30).to_string();
    let t = tokens(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": next}),
        )
        .await,
    )
    .await;
    let amr = claims_of(t["access_token"].as_str().unwrap_or_default())["amr"].clone();
    assert_eq!(amr, json!(["pwd", "mfa"]));
    // Refreshed sessions keep their MFA status.
    let refreshed = tokens(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        claims_of(refreshed["access_token"].as_str().unwrap_or_default())["amr"],
        json!(["pwd", "mfa"])
    );
    let challenge = mfa_login(&app, &org).await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": next}),
        )
        .await,
        401,
    )
    .await;

    // Recovery codes: each works once.
    let challenge = mfa_login(&app, &org).await;
    tokens(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": recovery[0].to_uppercase()}),
        )
        .await,
    )
    .await;
    let challenge = mfa_login(&app, &org).await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": recovery[0]}),
        )
        .await,
        401,
    )
    .await;
    tokens(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": recovery[1]}),
        )
        .await,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn totp_enrol_activate_verify_replay_and_recovery_codes_on_sqlite() {
    mfa_flow(
        Backend::Sqlite,
        "totp_enrol_activate_verify_replay_and_recovery_codes_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn totp_enrol_activate_verify_replay_and_recovery_codes_on_postgres() {
    mfa_flow(
        Backend::Postgres,
        "totp_enrol_activate_verify_replay_and_recovery_codes_on_postgres",
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

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_on_unsafe_methods() {
    // Unsafe cookie requests also need a configured Origin (attack::cookies
    // tries the others).
    let Some(app) = crate::support::spawn_app_with(
        Backend::Sqlite,
        "cookie_sessions_need_the_csrf_token_on_unsafe_methods",
        |s| s.cors_origins = APP_ORIGIN.into(),
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    let cookie_login = json!({
        "org": org.slug, "email": "doc@example.org", "password": PASSWORD, "mode": "cookie"
    });
    // Login CSRF: another site's page (or none) cannot start a cookie
    // session, and the attempt costs the account nothing.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let mut req = app
            .http
            .post(app.url("/api/v1/auth/login"))
            .json(&cookie_login);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let refused = send(req).await;
        assert_eq!(refused.status(), 403, "{origin:?}");
        assert!(set_cookies(&refused).is_empty(), "{origin:?}");
        assert_eq!(problem(refused, 403).await["code"], "csrf_failed");
    }
    let res = send(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .header("origin", APP_ORIGIN)
            .json(&cookie_login),
    )
    .await;
    assert_eq!(res.status(), 200);
    let cookies = set_cookies(&res);
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "no tokens for scripts"
    );
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
    let names: Vec<&str> = cookies.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "__Host-carapace_session",
            "__Host-carapace_refresh",
            "__Host-carapace_csrf"
        ]
    );
    for (name, _, attrs) in &cookies {
        assert!(
            attrs.contains("Secure")
                && attrs.contains("Path=/")
                && attrs.contains("SameSite=Strict"),
            "{name}: {attrs}"
        );
        assert!(!attrs.contains("Domain"), "{name}");
        assert_eq!(
            attrs.contains("HttpOnly"),
            name != "__Host-carapace_csrf",
            "{name}: {attrs}"
        );
    }
    let jar = cookie_header(&cookies);

    // Safe methods need no CSRF token.
    let list = send(
        app.http
            .get(app.url("/api/v1/patients"))
            .header("cookie", &jar),
    )
    .await;
    assert_eq!(list.status(), 200);
    // Unsafe methods do: missing or wrong is 403, and nothing is written.
    let post = |csrf: Option<&str>| {
        let mut req = app
            .http
            .post(app.url("/api/v1/patients"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .json(&patient("Cora"));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        send(req)
    };
    assert_eq!(problem(post(None).await, 403).await["code"], "csrf_failed");
    problem(post(Some("not-the-token")).await, 403).await;
    assert_eq!(post(Some(&csrf)).await.status(), 201);

    // Refresh from the cookie (CSRF required), then log out (cookies cleared).
    let no_csrf = send(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .json(&json!({})),
    )
    .await;
    problem(no_csrf, 403).await;
    let refreshed = send(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .header("x-csrf-token", &csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(refreshed.status(), 200);
    let rotated = set_cookies(&refreshed);
    assert_eq!(rotated.len(), 3);
    let new_csrf = refreshed.json::<Value>().await.unwrap_or_default()["csrf_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let jar = cookie_header(&rotated);
    let out = send(
        app.http
            .post(app.url("/api/v1/auth/logout"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .header("x-csrf-token", &new_csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(out.status(), 204);
    assert!(
        set_cookies(&out)
            .iter()
            .all(|(_, v, attrs)| v.is_empty() && attrs.contains("Max-Age=0"))
    );
    let after = send(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .header("x-csrf-token", &new_csrf)
            .json(&json!({})),
    )
    .await;
    problem(after, 401).await;
    app.stop().await;
}

/// `carapace org delete` (its storage half): every session and service key
/// of the organization ends with it, so no token of its still works, not
/// even on routes that read no PHI.
async fn deleting_an_org_ends_its_sessions(backend: Backend, test: &str) {
    let Some((app, org)) = setup(test, backend).await else {
        return;
    };
    let other = app.org().await;
    user(&app, &other, "doc@example.org", Role::Clinician).await;
    let t = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let kept = tokens(login(&app, &other.slug, "doc@example.org", PASSWORD).await).await;
    let access = t["access_token"].as_str().unwrap_or_default().to_owned();
    app.new_patient(&access, "Lena").await;

    let ctx = TenantContext::new(
        org.id,
        SubjectId::parse("system:org-delete").unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        carapace_infra::SeaOrganizations::new(app.db.clone())
            .mark_deleted(&ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );

    problem(app.get("/api/v1/patients", &access).await, 401).await;
    problem(
        bearer_post(&app, "/api/v1/auth/mfa/totp/enroll", &access, json!({})).await,
        401,
    )
    .await;
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
    problem(
        login(&app, &org.slug, "doc@example.org", PASSWORD).await,
        401,
    )
    .await;
    // The other organization carries on.
    let other_access = kept["access_token"].as_str().unwrap_or_default();
    assert_eq!(
        app.get("/api/v1/patients", other_access).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn deleting_an_org_ends_its_sessions_on_sqlite() {
    deleting_an_org_ends_its_sessions(
        Backend::Sqlite,
        "deleting_an_org_ends_its_sessions_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn deleting_an_org_ends_its_sessions_on_postgres() {
    deleting_an_org_ends_its_sessions(
        Backend::Postgres,
        "deleting_an_org_ends_its_sessions_on_postgres",
    )
    .await;
}
