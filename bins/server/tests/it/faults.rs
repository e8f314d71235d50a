//! Faults: the database becoming unreachable mid-run gives fast 503s
//! (bounded waits, nothing half-written) and a failing readiness check,
//! and the server recovers by itself when the database is back.

use std::time::{Duration, Instant};

use carapace_auth::Role;
use carapace_testkit::relay::Relay;

use crate::support::{patient, problem, settings_with, spawn_with};

#[tokio::test]
async fn a_database_outage_is_a_fast_503_and_the_server_recovers() {
    let Some(pg) = carapace_testkit::postgres_fresh("database_outage", true).await else {
        return;
    };
    let url = url::Url::parse(&pg.app_url).unwrap_or_else(|e| panic!("{e}"));
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let relay = Relay::start(&target).await;
    let mut through = url.clone();
    let _ = through.set_port(Some(relay.addr().port()));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = settings_with(through.to_string());
    settings.data_dir = dir.path().join("data");
    settings.database_connect_timeout_secs = 1;
    settings.database_acquire_timeout_secs = 1;
    let app = spawn_with(settings, Some(dir)).await;
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    let id = app.new_patient(&token, "Ann").await;

    relay.cut().await;
    for _ in 0..3 {
        let started = Instant::now();
        let res = app.get(&format!("/api/v1/patients/{id}"), &token).await;
        assert!(started.elapsed() < Duration::from_secs(4), "fails fast");
        assert!(res.headers().get("retry-after").is_some());
        let body = problem(res, 503).await;
        assert!(!body.to_string().contains("Ann"));
        let res = app.create_patient(&token, &patient("Bea")).await;
        problem(res, 503).await;
    }
    let ready = app.get_public("/health/ready").await;
    let body = problem(ready, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("database")),
        "{body}"
    );
    assert_eq!(
        app.get_public("/health/live").await.status(),
        200,
        "live never touches the database"
    );

    relay.restore();
    let started = Instant::now();
    loop {
        let res = app.get(&format!("/api/v1/patients/{id}"), &token).await;
        if res.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "recovered without a restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get_public("/health/ready").await.status(), 200);
    let names: Vec<String> = app
        .all_patients(&token)
        .await
        .iter()
        .map(|p| p["given_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, vec!["Ann"], "nothing half-written during the outage");
    app.stop().await;
}
