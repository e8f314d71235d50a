//! Alerts: raised by security events, queued with them, delivered as
//! HMAC-signed webhooks, retried while the receiver is down, and not lost
//! across a restart.

use std::time::Duration;

use carapace_audit::alerts::webhook_signature;
use carapace_auth::Role;
use carapace_server::settings::Settings;
use carapace_testkit::receiver::{Answer, Receiver};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, login, tokens, user};
use crate::support::{DEV_SECRET, TestApp, problem, send, spawn_with};

const SECRET: &str = "alert-webhook-secret-0123456789abcdef";

fn settings(dir: &std::path::Path, receiver: &Receiver) -> Settings {
    Settings {
        database_url: format!("sqlite://{}/carapace.db", dir.display()).into(),
        dev_token_secret: Some(DEV_SECRET.to_owned().into()),
        data_dir: dir.join("data"),
        alert_webhook_url: Some(format!("{}/hook", receiver.base)),
        alert_webhook_secret: Some(SECRET.to_owned().into()),
        alert_webhook_allow_loopback: true,
        // A spent refresh token presented again is a reuse at once.
        refresh_grace_secs: 0,
        ..Settings::default()
    }
}

/// Chains what is pending (which raises the alerts, as the server's
/// chainer does every second), then runs one delivery pass.
async fn deliver(app: &TestApp, settings: &Settings) -> (u64, u64) {
    let key =
        carapace_server::server::audit_signing_key(settings).unwrap_or_else(|e| panic!("{e}"));
    carapace_infra::audit::AuditChainer::new(app.db.clone(), key, std::time::Duration::ZERO)
        .run_once()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deliverer = carapace_server::server::alert_deliverer(settings, &app.db)
        .unwrap_or_else(|| panic!("webhook configured"));
    let r = deliverer.run_once().await.unwrap_or_else(|e| panic!("{e}"));
    (r.delivered, r.failed)
}

#[tokio::test]
async fn security_events_raise_signed_webhooks_that_survive_outages_and_restarts() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let settings = settings(dir.path(), &receiver);
    let app = spawn_with(settings.clone(), None).await;
    let org = app.org().await;
    let other = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let foreign = app
        .new_patient(&app.token(&other, Role::Admin), "Zephyrine")
        .await;

    // The receiver is down when the first alert is raised.
    receiver.answer(Answer::status("503 Service Unavailable"));
    problem(
        app.get(&format!("/api/v1/patients/{foreign}"), &ada).await,
        404,
    )
    .await;
    assert_eq!(deliver(&app, &settings).await, (0, 1));
    assert_eq!(receiver.received().len(), 1);
    // Not due again yet (backoff), and then the server stops.
    assert_eq!(deliver(&app, &settings).await, (0, 0));
    app.stop().await;

    // A new server on the same database delivers it once the receiver is back.
    receiver.answer(Answer::ok());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let app = spawn_with(settings.clone(), None).await;
    assert_eq!(deliver(&app, &settings).await, (1, 0));
    assert_eq!(deliver(&app, &settings).await, (0, 0), "delivered once");
    let got = receiver.received();
    let last = got.last().unwrap_or_else(|| panic!("delivered"));
    assert!(last.line.starts_with("POST /hook"));
    let timestamp: i64 = last
        .header("x-carapace-timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("timestamp"));
    assert_eq!(
        last.header("x-carapace-signature"),
        Some(webhook_signature(SECRET.as_bytes(), timestamp, &last.body).as_str()),
        "signed with the shared secret"
    );
    let alert: Value = serde_json::from_slice(&last.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alert["alert"], "cross_tenant_attempt");
    assert_eq!(alert["event"]["actor"], "clinician-ada");
    assert!(!String::from_utf8_lossy(&last.body).contains("Zephyrine"));

    // The other rules: break-glass, refresh-token reuse, a failed-login burst.
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let p = app.new_patient(&ada, "Pat").await;
    let glass = send(
        app.http
            .post(app.url(&format!("/api/v1/patients/{p}/break-glass")))
            .bearer_auth(&bob)
            .json(&json!({"reason": "unconscious patient in the emergency room"})),
    )
    .await;
    assert_eq!(glass.status(), 201);
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    let first = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    for _ in 0..2 {
        let _ = send(
            app.http
                .post(app.url("/api/v1/auth/refresh"))
                .json(&json!({"refresh_token": first["refresh_token"]})),
        )
        .await;
    }
    for _ in 0..4 {
        problem(
            login(&app, &org.slug, "doc@example.org", "wrong wrong wrong").await,
            401,
        )
        .await;
    }
    assert_eq!(deliver(&app, &settings).await, (3, 0));
    let rules: Vec<String> = receiver
        .received()
        .iter()
        .skip(2)
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v["alert"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        rules,
        vec!["break_glass", "refresh_token_reuse", "failed_login_burst"],
        "one alert each; the burst once, on the fourth failure"
    );
    app.stop().await;
}

#[test]
fn production_refuses_plain_http_and_loopback_webhooks() {
    let base = Settings {
        profile: carapace_server::settings::Profile::Production,
        alert_webhook_url: Some("http://alerts.example.org/hook".into()),
        alert_webhook_secret: Some(SECRET.to_owned().into()),
        ..Settings::default()
    };
    let keys: Vec<&str> = base.problems().iter().map(|p| p.key).collect();
    assert!(keys.contains(&"CARAPACE_ALERT_WEBHOOK_URL"));
    let loopback = Settings {
        alert_webhook_url: Some("https://alerts.example.org/hook".into()),
        alert_webhook_allow_loopback: true,
        ..base.clone()
    };
    let keys: Vec<&str> = loopback.problems().iter().map(|p| p.key).collect();
    assert!(keys.contains(&"CARAPACE_ALERT_WEBHOOK_URL"));
    let unsigned = Settings {
        profile: carapace_server::settings::Profile::Dev,
        alert_webhook_secret: None,
        ..base
    };
    let keys: Vec<&str> = unsigned.problems().iter().map(|p| p.key).collect();
    assert_eq!(keys, vec!["CARAPACE_ALERT_WEBHOOK_SECRET"]);
}
