//! Issuer (OIDC) tokens end to end, against a real local issuer.

use carapace_auth::Role;
use carapace_testkit::issuer::{AUDIENCE, TestIssuer, TestKey};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, patient, problem, spawn_app_with};

async fn app_with_issuer(backend: Backend, test: &str, issuer: &TestIssuer) -> Option<TestApp> {
    let url = issuer.url.clone();
    spawn_app_with(backend, test, move |s| {
        s.oidc_issuer = Some(url);
        s.oidc_audience = Some(AUDIENCE.into());
    })
    .await
}

async fn issuer_token_round_trip(backend: Backend, test: &str) {
    let issuer = TestIssuer::start();
    let Some(app) = app_with_issuer(backend, test, &issuer).await else {
        return;
    };
    let org = app.org().await;
    let token = issuer.sign(
        TestKey::Rsa1,
        &issuer.claims(&org.id.to_string(), &["clinician"]),
    );
    let id = app.new_patient(&token, "Olive").await;
    let read: Value = app
        .get(&format!("/api/v1/patients/{id}"), &token)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read["given_name"], "Olive");
    // Issuer identities are namespaced: one can never act as a local
    // account, even with a `sub` equal to a local user's id.
    let mut claims = issuer.claims(&org.id.to_string(), &["admin"]);
    claims["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let as_local = issuer.sign(TestKey::Rsa1, &claims);
    let enroll = crate::support::send(
        app.http
            .post(app.url("/api/v1/auth/mfa/totp/enroll"))
            .bearer_auth(&as_local)
            .json(&json!({})),
    )
    .await;
    problem(enroll, 403).await;
    // Dev tokens still work alongside in the dev profile.
    assert_eq!(
        app.all_patients(&app.token(&org, Role::Viewer)).await.len(),
        1
    );
    let ready: Value = app
        .get_public("/health/ready")
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ready["checks"][2],
        json!({"name": "key_provider", "status": "ok"})
    );
    assert_eq!(ready["checks"][3], json!({"name": "oidc", "status": "ok"}));
    app.stop().await;
}

#[tokio::test]
async fn issuer_token_creates_and_reads_a_patient_on_sqlite() {
    issuer_token_round_trip(
        Backend::Sqlite,
        "issuer_token_creates_and_reads_a_patient_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn issuer_token_creates_and_reads_a_patient_on_postgres() {
    issuer_token_round_trip(
        Backend::Postgres,
        "issuer_token_creates_and_reads_a_patient_on_postgres",
    )
    .await;
}

#[tokio::test]
async fn bad_issuer_tokens_are_401_never_500() {
    let issuer = TestIssuer::start();
    let Some(app) = app_with_issuer(
        Backend::Sqlite,
        "bad_issuer_tokens_are_401_never_500",
        &issuer,
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    let good = issuer.sign(
        TestKey::Ec1,
        &issuer.claims(&org.id.to_string(), &["clinician"]),
    );
    let parts: Vec<&str> = good.split('.').collect();
    let unknown_org = issuer.sign(
        TestKey::Ec1,
        &issuer.claims("0190d5a4-0000-7000-8000-00000000beef", &["clinician"]),
    );
    let mut cases = vec![
        unknown_org,
        format!("{}.{}.{}", parts[0], "A".repeat(16 * 1024), parts[2]),
        format!("eyJhbGciOiJub25lIn0.{}.", parts[1]),
        format!("{}.{}.{}", parts[0], parts[1], "AAAA"),
    ];
    let mut no_org = issuer.claims(&org.id.to_string(), &["clinician"]);
    no_org.as_object_mut().map(|m| m.remove("org_id"));
    cases.push(issuer.sign(TestKey::Rsa1, &no_org));
    for token in cases {
        let res = app.create_patient(&token, &patient("Mallory")).await;
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{status}");
        problem(res, 401).await;
    }
    assert!(
        app.all_patients(&good).await.is_empty(),
        "nothing was written"
    );
    app.stop().await;
}

#[tokio::test]
async fn issuer_down_at_start_shows_in_readiness_and_fails_closed() {
    let issuer = TestIssuer::start();
    issuer.set_down(true);
    let Some(app) = app_with_issuer(
        Backend::Sqlite,
        "issuer_down_at_start_shows_in_readiness_and_fails_closed",
        &issuer,
    )
    .await
    else {
        return;
    };
    let body = problem(app.get_public("/health/ready").await, 503).await;
    assert_eq!(
        body["detail"],
        "failed checks: oidc: no usable signing keys (issuer unreachable)"
    );
    let org = app.org().await;
    let token = issuer.sign(
        TestKey::Rsa1,
        &issuer.claims(&org.id.to_string(), &["clinician"]),
    );
    let res = app.create_patient(&token, &patient("Nobody")).await;
    let p = problem(res, 503).await;
    assert_eq!(p["code"], "auth_unavailable");
    // The issuer comes back: readiness itself fetches the keys again, so
    // the instance recovers although, not ready, it gets no traffic.
    issuer.set_down(false);
    let mut ready = false;
    for _ in 0..40 {
        if app.get_public("/health/ready").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ready, "readiness recovers once the issuer answers");
    assert_eq!(
        app.create_patient(&token, &patient("Somebody"))
            .await
            .status(),
        201
    );
    app.stop().await;
}

#[tokio::test]
async fn with_dev_tokens_off_hs256_tokens_are_refused() {
    let issuer = TestIssuer::start();
    let url = issuer.url.clone();
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "with_dev_tokens_off_hs256_tokens_are_refused",
        move |s| {
            s.oidc_issuer = Some(url);
            s.oidc_audience = Some(AUDIENCE.into());
            s.dev_tokens = Some(false);
        },
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    let dev = app.token(&org, Role::Admin);
    problem(app.create_patient(&dev, &patient("Dev")).await, 401).await;
    let real = issuer.sign(
        TestKey::Rsa1,
        &issuer.claims(&org.id.to_string(), &["clinician"]),
    );
    assert_eq!(
        app.create_patient(&real, &patient("Real")).await.status(),
        201
    );
    app.stop().await;
}
