//! Rate limits: per address on the authentication routes (a spoofed
//! `X-Forwarded-For` from an untrusted peer changes nothing), per principal
//! elsewhere, 429 problem+json with `Retry-After`, and one quota shared by
//! two instances through Redis.

use carapace_auth::Role;
use secrecy::SecretString;

use crate::auth::{PASSWORD, login, user};
use crate::support::{Backend, TestApp, problem, send, spawn_app_with};

/// A login attempt that says it was forwarded for `forwarded`.
async fn login_via(app: &TestApp, org: &str, forwarded: &str) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&serde_json::json!({
                "org": org, "email": "doc@example.org", "password": "not the password!"
            })),
    )
    .await
}

async fn assert_limited(res: reqwest::Response) {
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After: {retry:?}"
    );
    let body = problem(res, 429).await;
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn a_login_flood_from_one_address_is_refused_whatever_it_says_it_forwards() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "login_flood", |s| {
        s.rate_limit_auth_per_minute = 2;
        s.rate_limit_auth_burst = 3;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    for i in 0..3 {
        let res = login_via(&app, &org.slug, &format!("198.51.100.{i}")).await;
        assert_eq!(res.status(), 401, "attempt {i} is within the burst");
    }
    // The socket peer is not a trusted proxy: its forwarded addresses are
    // its own claims, and a fresh one each time buys nothing.
    for i in 10..15 {
        assert_limited(login_via(&app, &org.slug, &format!("198.51.100.{i}")).await).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_quota_and_the_account_stays_usable() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "trusted_proxy_quota", |s| {
        s.rate_limit_auth_per_minute = 2;
        s.rate_limit_auth_burst = 3;
        s.trusted_proxies = "127.0.0.1".into();
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    // Somebody floods the account from 203.0.113.5: after the burst
    // (fewer than the five failures that lock an account) they get 429s
    // and the guessing stops counting.
    for _ in 0..3 {
        assert_eq!(
            login_via(&app, &org.slug, "203.0.113.5").await.status(),
            401
        );
    }
    for _ in 0..20 {
        assert_limited(login_via(&app, &org.slug, "203.0.113.5").await).await;
    }
    // The account's owner, from another address through the same proxy,
    // still gets in.
    let res = send(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", "1.2.3.4, 198.51.100.77")
            .json(&serde_json::json!({
                "org": org.slug, "email": "doc@example.org", "password": PASSWORD
            })),
    )
    .await;
    assert_eq!(res.status(), 200, "the flood did not lock the account");
    app.stop().await;
}

#[tokio::test]
async fn authenticated_requests_are_charged_to_the_principal() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "principal_quota", |s| {
        s.rate_limit_api_per_minute = 1;
        s.rate_limit_api_burst = 3;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let alice = app.token_as(&org, Role::Clinician, "alice");
    let bob = app.token_as(&org, Role::Clinician, "bob");
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/patients", &alice).await.status(), 200);
    }
    let refused = send(
        app.http
            .get(app.url("/api/v1/patients"))
            .bearer_auth(&alice)
            .header("x-request-id", "rid-limit-check-7"),
    )
    .await;
    assert_limited(refused).await;
    // The refusal is logged, and every line of that request names it.
    let logs = crate::support::captured_log_text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("rid-limit-check-7"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("rate limit exceeded")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request completed") && l.contains("429")),
        "{lines:?}"
    );
    // Another principal from the same address is not affected.
    assert_eq!(app.get("/api/v1/patients", &bob).await.status(), 200);
    // Nor is a login (another class, charged to the address).
    assert_eq!(
        login(&app, &org.slug, "x@example.org", "wrong")
            .await
            .status(),
        401
    );
    app.stop().await;
}

#[tokio::test]
async fn two_instances_share_one_quota_through_redis() {
    let Some(redis) = carapace_testkit::redis_url("two_instances_share_one_quota") else {
        return;
    };
    let configure = |s: &mut carapace_server::settings::Settings| {
        s.redis_url = Some(SecretString::from(redis.clone()));
        s.rate_limit_api_per_minute = 1;
        s.rate_limit_api_burst = 4;
    };
    let test = "two_instances_share_one_quota";
    let Some(one) = spawn_app_with(Backend::Postgres, test, configure).await else {
        return;
    };
    let Some(two) = spawn_app_with(Backend::Postgres, test, configure).await else {
        return;
    };
    let org = one.org().await;
    let token = one.token_as(&org, Role::Clinician, "carol");
    let mut allowed = 0;
    for i in 0..10 {
        let app = if i % 2 == 0 { &one } else { &two };
        let res = app.get("/api/v1/patients", &token).await;
        match res.status().as_u16() {
            200 => allowed += 1,
            429 => assert_limited(res).await,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(allowed, 4, "one burst across both instances, not one each");
    let ready: serde_json::Value = one
        .get_public("/health/ready")
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        ready["checks"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["name"] == "redis" && c["status"] == "ok")),
        "readiness reports Redis: {ready}"
    );
    one.stop().await;
    two.stop().await;
}
