//! The kill switch: set through one instance (or the CLI), obeyed by every
//! instance within seconds; only health, JWKS and the switch answer while
//! it is on; only the operator organization's MFA administrators may use
//! the API; every change lands in every organization's audit trail.

use std::process::Command;
use std::time::{Duration, Instant};

use carapace_audit::Access;
use carapace_auth::Role;
use carapace_infra::SeaOrganizations;
use carapace_infra::audit::{AuditQuery, SeaAuditLog};
use carapace_tenancy::{
    NewOrganization, OrgName, OrgSlug, OrganizationRepository as _, SubjectId, TenantContext,
};
use serde_json::{Value, json};

use crate::support::{Org, TestApp, problem, send, settings_with, spawn_with};

const OPERATORS: &str = "ops-team";

async fn instance(pg: &carapace_testkit::PgTestDb) -> TestApp {
    instance_with(pg, |_| {}).await
}

async fn instance_with(
    pg: &carapace_testkit::PgTestDb,
    change: impl FnOnce(&mut carapace_server::settings::Settings),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = settings_with(pg.app_url.clone());
    settings.data_dir = dir.path().join("data");
    settings.operator_org = Some(OPERATORS.into());
    change(&mut settings);
    spawn_with(settings, Some(dir)).await
}

async fn put(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    send(
        app.http
            .put(app.url("/api/v1/admin/kill-switch"))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

/// Waits up to 5 s for `path` on `app` to answer `status`.
async fn eventually(app: &TestApp, token: &str, path: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let res = app.get(path, token).await;
        if res.status().as_u16() == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} still {} after 5 s",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator organization, created.
async fn operators(app: &TestApp) -> Org {
    let ops = SeaOrganizations::new(app.db.clone())
        .create(NewOrganization {
            slug: OrgSlug::parse(OPERATORS).unwrap_or_else(|e| panic!("{e}")),
            name: OrgName::parse("Operators").unwrap_or_else(|e| panic!("{e}")),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Org {
        id: ops.id,
        slug: OPERATORS.into(),
    }
}

async fn switch_events(app: &TestApp, org: &Org) -> Vec<String> {
    let reader = Access::system(TenantContext::new(
        org.id,
        SubjectId::parse("test").unwrap_or_else(|e| panic!("{e}")),
    ));
    let page = SeaAuditLog::new(app.db.clone())
        .query(
            &reader,
            &AuditQuery {
                action: Some("security.admin_action".into()),
                limit: 100,
                ..AuditQuery::default()
            },
            reader.event(
                "audit.read",
                "audit_log",
                None,
                carapace_audit::Outcome::Allowed,
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    page.items
        .into_iter()
        .filter_map(|e| e.detail)
        .filter(|d| d.starts_with("kill_switch"))
        .collect()
}

#[tokio::test]
async fn set_through_one_instance_obeyed_by_the_other_and_recorded_everywhere() {
    let Some(pg) = carapace_testkit::postgres_fresh("kill_switch_two_instances", true).await else {
        return;
    };
    let one = instance(&pg).await;
    let two = instance(&pg).await;
    let ops = operators(&one).await;
    let clinic = one.org().await;
    let operator = one.token(&ops, Role::Admin);
    let clinician = one.token(&clinic, Role::Clinician);
    let clinic_admin = one.token(&clinic, Role::Admin);

    // Refusals: another organization's admin, an operator without MFA, no reason.
    problem(
        put(&one, &clinic_admin, json!({"engaged": true, "reason": "x"})).await,
        403,
    )
    .await;
    let no_mfa = one.token_without_mfa(&ops, Role::Admin);
    problem(
        put(&one, &no_mfa, json!({"engaged": true, "reason": "x"})).await,
        403,
    )
    .await;
    let body = problem(put(&one, &operator, json!({"engaged": true})).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "reason");
    let long = "r".repeat(501);
    problem(
        put(&one, &operator, json!({"engaged": true, "reason": long})).await,
        422,
    )
    .await;
    assert_eq!(
        two.get("/api/v1/patients", &clinician).await.status(),
        200,
        "nothing changed"
    );

    let on = put(
        &one,
        &operator,
        json!({"engaged": true, "reason": "credential leak drill"}),
    )
    .await;
    assert_eq!(on.status(), 200);
    let view: Value = on.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(view["engaged"], true);
    assert_eq!(view["reason"], "credential leak drill");

    let took = eventually(&two, &clinician, "/api/v1/patients", 503).await;
    assert!(
        took < Duration::from_secs(3),
        "the other instance obeyed in {took:?}"
    );
    let refused = two.get("/api/v1/patients", &clinician).await;
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(problem(refused, 503).await["code"], "kill_switch_on");
    // Logging in is stopped too; health, JWKS and the switch still answer.
    let login = send(two.http.post(two.url("/api/v1/auth/login")).json(
        &json!({"org": clinic.slug, "email": "a@example.org", "password": "whatever it is"}),
    ))
    .await;
    assert_eq!(login.status(), 503);
    assert_eq!(two.get_public("/health/live").await.status(), 200);
    assert_eq!(two.get_public("/.well-known/jwks.json").await.status(), 200);
    let seen: Value = two
        .get("/api/v1/admin/kill-switch", &operator)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen["engaged"], true);

    // Off again through the other instance; both serve.
    let off = put(&two, &operator, json!({"engaged": false})).await;
    assert_eq!(off.status(), 200);
    eventually(&one, &clinician, "/api/v1/patients", 200).await;
    eventually(&two, &clinician, "/api/v1/patients", 200).await;

    // Every organization's trail has both changes, by the operator.
    for org in [&ops, &clinic] {
        let mut events = switch_events(&one, org).await;
        events.sort();
        assert_eq!(
            events,
            vec!["kill_switch.off", "kill_switch.on"],
            "{}",
            org.slug
        );
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn the_cli_turns_it_on_and_off_for_running_instances() {
    let Some(pg) = carapace_testkit::postgres_fresh("kill_switch_cli", true).await else {
        return;
    };
    let app = instance(&pg).await;
    let clinic = app.org().await;
    let clinician = app.token(&clinic, Role::Clinician);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_carapace"))
            .current_dir(dir.path())
            .env_clear()
            .env("CARAPACE_DATABASE_URL", &pg.app_url)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let missing = cli(&["kill-switch", "on"]);
    assert!(!missing.status.success(), "a reason is required");
    let on = cli(&["kill-switch", "on", "--reason", "maintenance window"]);
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    eventually(&app, &clinician, "/api/v1/patients", 503).await;
    let status = cli(&["kill-switch", "status"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status["engaged"], true);
    assert_eq!(status["changed_by"], "system:cli");
    assert!(cli(&["kill-switch", "off"]).status.success());
    eventually(&app, &clinician, "/api/v1/patients", 200).await;
    assert_eq!(
        switch_events(&app, &clinic).await.len(),
        2,
        "recorded in the organization's trail"
    );
    app.stop().await;
}

/// Starts a bulk export as `token`; its status URL's path.
async fn start_export(app: &TestApp, token: &str) -> String {
    let res = send(
        app.http
            .get(app.url("/fhir/R4/Patient/$export"))
            .bearer_auth(token)
            .header("accept", "application/fhir+json")
            .header("prefer", "respond-async"),
    )
    .await;
    assert_eq!(res.status(), 202);
    let url = res
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no status URL"));
    let (_, path) = url.split_once("/fhir/").unwrap_or_else(|| panic!("{url}"));
    format!("/fhir/{path}")
}

/// The status an export's status URL answers once it is no longer running.
async fn export_ends(app: &TestApp, token: &str, path: &str) -> u16 {
    let started = Instant::now();
    loop {
        let res = app.get(path, token).await;
        if res.status() != 202 {
            return res.status().as_u16();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bulk export runs on after its request was answered: the switch stops
/// it too (checked before every page and every patient's records), so no
/// file of it can be fetched, and the export says it was stopped.
#[tokio::test]
async fn a_bulk_export_under_way_stops_when_the_switch_goes_on() {
    let Some(pg) = carapace_testkit::postgres_fresh("kill_switch_bulk_export", true).await else {
        return;
    };
    // The patients are made faster than a person's request rate allows.
    let app = instance_with(&pg, |s| s.rate_limit_api_burst = 1000).await;
    let operator = app.token(&operators(&app).await, Role::Admin);
    let clinic = app.org().await;
    let clinician = app.token(&clinic, Role::Clinician);
    // Every clinician reaches every patient: twelve of them export at once
    // (one caller may run two exports at a time).
    let settings = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(app.token(&clinic, Role::Admin))
            .json(&json!({"clinician_scope": "organization", "phi_mfa": "admin"})),
    )
    .await;
    assert_eq!(settings.status(), 200);
    // Organization settings are remembered for up to a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let clinicians: Vec<String> = (0..12)
        .map(|i| app.token_as(&clinic, Role::Clinician, &format!("clinician-{i}")))
        .collect();
    // Enough patients that their records take a while to read.
    for i in 0..300 {
        app.new_patient(&clinician, &format!("Export{i}")).await;
    }

    // Several exports at once, so that some are still reading when the
    // switch goes on (turning it on writes to every organization's trail).
    // On a loaded machine they may all finish first: then again, at most
    // three times.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let mut running = Vec::new();
        for who in &clinicians {
            running.push((who, start_export(&app, who).await));
        }
        let on = put(
            &app,
            &operator,
            json!({"engaged": true, "reason": "breach response"}),
        )
        .await;
        assert_eq!(on.status(), 200);
        let off = put(
            &app,
            &operator,
            json!({"engaged": false, "reason": "contained"}),
        )
        .await;
        assert_eq!(off.status(), 200);
        let mut ends = Vec::new();
        for (who, path) in &running {
            ends.push(export_ends(&app, who, path).await);
        }
        assert!(
            ends.iter().all(|s| *s == 200 || *s == 500),
            "each export completed before the switch or failed: {ends:?}"
        );
        let stopped = ends.iter().position(|s| *s == 500);
        rounds.push(ends);
        if let Some(i) = stopped {
            // It says why.
            let (who, path) = &running[i];
            let outcome: serde_json::Value = app
                .get(path, who)
                .await
                .json()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                outcome["issue"][0]["diagnostics"],
                "stopped by the kill switch; start another once it is off",
                "{outcome}"
            );
            break;
        }
    }
    assert!(
        rounds.iter().flatten().any(|s| *s == 500),
        "the exports under way when the switch went on stopped: {rounds:?}"
    );

    // With the switch off, an export completes.
    let again = start_export(&app, &clinician).await;
    assert_eq!(export_ends(&app, &clinician, &again).await, 200);
}
