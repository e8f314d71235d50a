//! `/metrics`: only for the metrics token, route templates (never paths
//! or values) as labels, rate-limit refusals counted.

use carapace_auth::Role;
use secrecy::SecretString;

use crate::support::{Backend, patient, send, spawn_app, spawn_app_with};

const TOKEN: &str = "metrics-token-0123456789abcdef-0123456789";

#[tokio::test]
async fn metrics_need_the_token_and_label_by_route_template() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "metrics_scrape", |s| {
        s.metrics_token = Some(SecretString::from(TOKEN));
        s.rate_limit_api_per_minute = 1;
        s.rate_limit_api_burst = 3;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    let id = app.new_patient(&token, "Ann").await;
    let _ = app.get(&format!("/api/v1/patients/{id}"), &token).await;
    let _ = app.get(&format!("/api/v1/patients/{id}"), &token).await;
    let limited = app.get("/api/v1/patients", &token).await;
    assert_eq!(limited.status(), 429);

    assert_eq!(app.get_public("/api/v1/patients").await.status(), 401);
    assert_eq!(app.get_public("/metrics").await.status(), 401);
    assert_eq!(app.get("/metrics", "not-the-token").await.status(), 401);
    let scrape = app.get("/metrics", TOKEN).await;
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap_or_default();
    assert!(
        text.contains(r#"carapace_http_requests_total{method="GET",route="/api/v1/patients/{id}",status="200"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"carapace_rate_limited_total{class="api"} 1"#),
        "{text}"
    );
    assert!(text.contains("carapace_db_pool_connections"), "{text}");
    assert!(text.contains("carapace_kill_switch_engaged 0"), "{text}");
    assert!(!text.contains(&id), "no ids in labels");
    app.stop().await;
}

#[tokio::test]
async fn without_a_token_there_are_no_metrics() {
    let Some(app) = spawn_app(Backend::Sqlite, "metrics_off").await else {
        return;
    };
    let org = app.org().await;
    let token = app.token(&org, Role::Admin);
    let _ = send(
        app.http
            .post(app.url("/api/v1/patients"))
            .bearer_auth(&token)
            .json(&patient("A")),
    )
    .await;
    assert_eq!(app.get("/metrics", &token).await.status(), 404);
    app.stop().await;
}
