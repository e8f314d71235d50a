//! What the console draws from: audit events per day by outcome, and the
//! chain's verification state, over the public API; and the console's own
//! page, served with a policy that allows no inline script or style.

use carapace_auth::Role;
use serde_json::Value;
use time::OffsetDateTime;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, problem, spawn_app, spawn_on_fresh_postgres};

async fn daily_counts_are_the_organizations_own_and_recorded(app: &TestApp) {
    let org = app.org().await;
    let other = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let p = app.new_patient(&admin, "Counted").await;
    // Denied (no relationship) and not found, then another organization's
    // events, which must not be counted here.
    let stranger = app.token_as(&org, Role::Clinician, "clinician-stranger");
    assert_eq!(
        app.get(&format!("/api/v1/patients/{p}"), &stranger)
            .await
            .status(),
        403
    );
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/api/v1/patients/{missing}"), &admin)
            .await
            .status(),
        404
    );
    let elsewhere = app.token(&other, Role::Admin);
    for _ in 0..3 {
        app.new_patient(&elsewhere, "Elsewhere").await;
    }

    // One page of the trail: every event so far (its own read is appended
    // after it is read).
    let listed: Value = app
        .get("/api/v1/audit-events?limit=500", &compliance)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = listed["items"].as_array().cloned().unwrap_or_default();
    assert!(listed.len() < 500);
    let res = app.get("/api/v1/audit-events/daily", &compliance).await;
    assert_eq!(res.status(), 200);
    let daily: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    let days = daily["days"].as_array().cloned().unwrap_or_default();
    let today = OffsetDateTime::now_utc().date().to_string();
    assert_eq!(days.len(), 1, "{daily}");
    assert_eq!(days[0]["day"], today.as_str());
    let count = |outcome: &str| days[0][outcome].as_u64().unwrap_or(u64::MAX);
    let listed_with = |outcome: &str| {
        u64::try_from(listed.iter().filter(|e| e["outcome"] == outcome).count()).unwrap_or(0)
    };
    // Exactly the listed events, plus the listing's own read (allowed).
    assert_eq!(count("allowed"), listed_with("allowed") + 1, "{daily}");
    assert_eq!(count("denied"), listed_with("denied"), "{daily}");
    assert_eq!(count("not_found"), listed_with("not_found"), "{daily}");
    assert!(count("denied") >= 1 && count("not_found") >= 1, "{daily}");

    // A range that holds no event, and the read is recorded.
    let empty: Value = app
        .get(
            "/api/v1/audit-events/daily?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
            &compliance,
        )
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(empty["days"], serde_json::json!([]));
    let reads: Value = app
        .get(
            "/api/v1/audit-events?action=audit.read&limit=500",
            &compliance,
        )
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let details: Vec<&str> = reads["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("daily counts: from=2020-01-01T00:00:00Z")),
        "{details:?}"
    );

    // Bad ranges and callers who may not read the trail.
    for bad in [
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
    ] {
        let res = app
            .get(&format!("/api/v1/audit-events/daily?{bad}"), &compliance)
            .await;
        problem(res, 422).await;
    }
    let res = app
        .get("/api/v1/audit-events/daily?org=x", &compliance)
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    for who in [
        app.token(&org, Role::Clinician),
        app.token(&org, Role::Staff),
    ] {
        problem(app.get("/api/v1/audit-events/daily", &who).await, 403).await;
        problem(app.get("/api/v1/audit-chain", &who).await, 403).await;
    }
}
on_both_backends!(
    daily_counts_are_the_organizations_own_and_recorded_on,
    daily_counts_are_the_organizations_own_and_recorded
);

/// The chain state the console shows is a verification, not a flag: after
/// the database owner rewrites an event's actor with its triggers off,
/// the API says broken and names the position.
#[tokio::test]
async fn the_chain_state_turns_broken_when_the_owner_rewrites_an_event() {
    let test = "console_chain_state_broken_by_owner";
    let Some((app, pg, settings)) = spawn_on_fresh_postgres(test, true).await else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    for given in ["One", "Two", "Three"] {
        app.new_patient(&admin, given).await;
    }
    let chain = |token: String| {
        let app = &app;
        async move {
            let res = app.get("/api/v1/audit-chain", &token).await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap_or_else(|e| panic!("{e}"))
        }
    };
    // Nothing is wrong yet, whether or not the events are chained.
    let before = chain(compliance.clone()).await;
    assert_eq!(before["state"], "verified", "{before}");
    assert!(before["pending"].as_u64().is_some(), "{before}");

    let key =
        carapace_server::server::audit_signing_key(&settings).unwrap_or_else(|e| panic!("{e}"));
    carapace_infra::audit::AuditChainer::new(app.db.clone(), key, std::time::Duration::ZERO)
        .run_once()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chained = chain(admin.clone()).await;
    assert_eq!(chained["state"], "verified", "{chained}");
    assert!(chained["entries"].as_u64() >= Some(3), "{chained}");
    assert!(chained["checkpoints"].as_u64() >= Some(1), "{chained}");
    assert!(chained["finding"].is_null(), "{chained}");

    // The owner hides the administrator's creates behind another actor.
    carapace_testkit::exec_as_owner(
        &pg,
        &format!(
            "SET session_replication_role = replica;
             UPDATE audit_events SET actor = 'system:purge'
              WHERE org_id = '{}' AND action = 'patient.create'",
            org.id.as_uuid()
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let broken = chain(compliance.clone()).await;
    assert_eq!(broken["state"], "broken", "{broken}");
    assert!(
        broken["finding"]["position"].as_u64() >= Some(1),
        "{broken}"
    );
    assert_eq!(
        broken["finding"]["problem"], "column actor modified",
        "{broken}"
    );
    // Each verification is itself recorded, with its verdict.
    let verifies: Value = app
        .get("/api/v1/audit-events?action=audit.verify", &compliance)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outcomes: Vec<&str> = verifies["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["allowed", "allowed", "error"]);
    app.stop().await;
}

#[tokio::test]
async fn the_console_is_served_under_a_policy_with_nothing_inline() {
    let Some(app) = spawn_app(Backend::Sqlite, "console_served").await else {
        return;
    };
    let res = app.get_public("/console").await;
    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/console/")
    );
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let res = app.get_public(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("style-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(header("x-frame-options"), "DENY");
    }
    // Nothing else lives under /console/, and the API keeps its own policy.
    problem(app.get_public("/console/..%2fopenapi.json").await, 404).await;
    problem(app.get_public("/console/console.js/").await, 404).await;
    problem(app.get_public("/console/admin").await, 404).await;
    let api = app.get_public("/health/live").await;
    assert_eq!(
        api.headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok()),
        Some(carapace_server::http::headers::API_CSP)
    );
    app.stop().await;
}
