//! Security headers on every class of response, and CORS: configured exact
//! origins get the allow headers, any other origin gets none.

use carapace_auth::Role;

use crate::support::{Backend, patient, send, spawn_app_with};

const APP_ORIGIN: &str = "https://app.example.org";

fn assert_hardened(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    assert_eq!(get("cache-control"), "no-store", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(get("permissions-policy").contains("camera=()"), "{what}");
    assert!(
        get("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}"
    );
    assert!(!get("x-request-id").is_empty(), "{what}");
    assert!(h.get("server").is_none(), "{what}: no Server header");
}

#[tokio::test]
async fn every_class_of_response_carries_the_security_headers() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "security_headers", |_| {}).await else {
        return;
    };
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    let created = app.create_patient(&token, &patient("Ann")).await;
    assert_hardened(&created, "201 with PHI");
    assert_hardened(&app.get("/api/v1/patients", &token).await, "200 list");
    assert_hardened(&app.get_public("/api/v1/patients").await, "401");
    assert_hardened(&app.get("/api/v1/nowhere", &token).await, "404");
    assert_hardened(&app.get_public("/health/live").await, "health");
    assert_hardened(&app.get_public("/openapi.json").await, "openapi");
    let docs = app.get_public("/docs/").await;
    assert_hardened(&docs, "docs");
    let csp = docs
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("http"),
        "{csp}"
    );
    let api_csp = app
        .get_public("/health/live")
        .await
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(api_csp.starts_with("default-src 'none'"), "{api_csp}");
    assert!(
        app.get_public("/health/live")
            .await
            .headers()
            .get("strict-transport-security")
            .is_none(),
        "HSTS only in production"
    );
    app.stop().await;
}

#[tokio::test]
async fn cors_answers_configured_origins_only() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "cors_origins", |s| {
        s.cors_origins = APP_ORIGIN.into();
    })
    .await
    else {
        return;
    };
    let preflight = |origin: &'static str| {
        send(
            app.http
                .request(reqwest::Method::OPTIONS, app.url("/api/v1/patients"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
        )
    };
    let allowed = preflight(APP_ORIGIN).await;
    let h = allowed.headers();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(APP_ORIGIN)
    );
    assert_eq!(
        h.get("access-control-allow-credentials")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert!(
        h.get("access-control-allow-methods")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.contains("POST"))
    );

    for stranger in ["https://evil.example", "http://app.example.org", "null"] {
        let refused = preflight(stranger).await;
        for name in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-allow-methods",
            "access-control-allow-headers",
        ] {
            assert!(refused.headers().get(name).is_none(), "{stranger}: {name}");
        }
    }
    // A simple request from an unknown origin carries no allow header
    // either, so a browser withholds the answer.
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    let res = send(
        app.http
            .get(app.url("/api/v1/patients"))
            .bearer_auth(&token)
            .header("origin", "https://evil.example"),
    )
    .await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = send(
        app.http
            .get(app.url("/api/v1/patients"))
            .bearer_auth(&token)
            .header("origin", APP_ORIGIN),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(APP_ORIGIN)
    );
    app.stop().await;
}
