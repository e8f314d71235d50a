//! An identity-provider user is locked or deactivated while holding an
//! unexpired access token from the provider (which Carapace cannot call
//! back). The token must be refused at once, on every instance; after an
//! unlock, tokens issued before the lock stay dead; deactivation is final.

use carapace_auth::Role;
use carapace_testkit::issuer::{AUDIENCE, TestIssuer, TestKey};
use serde_json::json;

use super::kit::{ok_json, post};
use crate::support::{Org, TestApp, problem, settings_with, spawn_with};

/// An instance serving `db_url` that trusts `issuer`.
async fn instance(db_url: String, issuer: &TestIssuer) -> TestApp {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = settings_with(db_url);
    settings.data_dir = dir.path().join("data");
    settings.oidc_issuer = Some(issuer.url.clone());
    settings.oidc_audience = Some(AUDIENCE.into());
    spawn_with(settings, Some(dir)).await
}

fn token(issuer: &TestIssuer, org: &Org, sub: &str, iat: u64) -> String {
    let mut claims = issuer.claims(&org.id.to_string(), &["clinician"]);
    claims["sub"] = json!(sub);
    claims["iat"] = json!(iat);
    claims["nbf"] = json!(iat);
    issuer.sign(TestKey::Rsa1, &claims)
}

async fn scenario(one: &TestApp, two: &TestApp, issuer: &TestIssuer) {
    let org = one.org().await;
    let admin = one.token(&org, Role::Admin);
    let now = carapace_testkit::issuer::now();
    let held = token(issuer, &org, "nurse-7", now);
    for app in [one, two] {
        assert_eq!(app.get("/api/v1/patients", &held).await.status(), 200);
    }
    // Locked on instance one: refused at once on both.
    let res = post(
        one,
        "/api/v1/users/oidc:nurse-7/lock",
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    for app in [one, two] {
        let body = problem(app.get("/api/v1/patients", &held).await, 401).await;
        assert_eq!(body["code"], "invalid_token");
    }
    // A fresh token from the provider does not get around the lock.
    let fresh = token(issuer, &org, "nurse-7", carapace_testkit::issuer::now());
    problem(two.get("/api/v1/patients", &fresh).await, 401).await;
    // Another subject of the organization is untouched.
    let colleague = token(issuer, &org, "nurse-8", now);
    assert_eq!(two.get("/api/v1/patients", &colleague).await.status(), 200);

    // Unlocked: tokens issued before the lock stay refused; new ones work.
    let res = post(
        two,
        "/api/v1/users/oidc:nurse-7/unlock",
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    problem(one.get("/api/v1/patients", &held).await, 401).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = token(issuer, &org, "nurse-7", carapace_testkit::issuer::now() + 1);
    assert_eq!(one.get("/api/v1/patients", &after).await.status(), 200);

    // Deactivated: nothing works any more, and it cannot be undone.
    let res = post(
        one,
        "/api/v1/users/oidc:nurse-7/deactivate",
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    for app in [one, two] {
        problem(app.get("/api/v1/patients", &after).await, 401).await;
    }
    problem(
        post(
            one,
            "/api/v1/users/oidc:nurse-7/unlock",
            Some(&admin),
            json!({}),
        )
        .await,
        422,
    )
    .await;
    // The roles of such users are the provider's.
    let res = crate::support::send(
        one.http
            .patch(one.url("/api/v1/users/oidc:nurse-8"))
            .bearer_auth(&admin)
            .json(&json!({"roles": ["admin"]})),
    )
    .await;
    problem(res, 422).await;
    // Every change is in the trail, naming the subject.
    let trail = ok_json(
        one.get(
            "/api/v1/audit-events?resource_type=security&action=security.admin_action",
            &one.token(&org, Role::Compliance),
        )
        .await,
    )
    .await;
    let about: Vec<&str> = trail["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["resource_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        about.iter().filter(|r| **r == "oidc:nurse-7").count(),
        3,
        "{trail}"
    );
}

#[tokio::test]
async fn a_locked_issuer_user_is_refused_at_once_on_every_instance_on_sqlite() {
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}/shared.db", dir.path().display());
    let one = instance(url.clone(), &issuer).await;
    let two = instance(url, &issuer).await;
    scenario(&one, &two, &issuer).await;
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_locked_issuer_user_is_refused_at_once_on_every_instance_on_postgres() {
    let Some(pg) = carapace_testkit::postgres_fresh("issuer_revocation", true).await else {
        return;
    };
    let issuer = TestIssuer::start();
    let one = instance(pg.app_url.clone(), &issuer).await;
    let two = instance(pg.app_url.clone(), &issuer).await;
    scenario(&one, &two, &issuer).await;
    one.stop().await;
    two.stop().await;
}
