//! Bulk Data export.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, send, spawn_app};

async fn poll_export(app: &TestApp, status_url: &str, token: &str) -> Value {
    for _ in 0..200 {
        let res = call(app, "GET", status_url, token, None).await;
        match res.status().as_u16() {
            202 => {
                assert_eq!(header(res.headers(), "x-progress"), "in progress");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            200 => return res.json().await.unwrap_or_else(|e| panic!("{e}")),
            other => panic!("export status {other}: {:?}", res.text().await),
        }
    }
    panic!("the export did not finish");
}

async fn bulk_export(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let mut mine = Vec::new();
    for given in ["Exa", "Exb"] {
        let (p, _) = json_of(
            call(app, "POST", "/fhir/R4/Patient", &ada, Some(&jane(given))).await,
            201,
        )
        .await;
        mine.push(p["id"].as_str().unwrap_or_default().to_owned());
    }
    json_of(
        call(app, "POST", "/fhir/R4/Patient", &bob, Some(&jane("Bobs"))).await,
        201,
    )
    .await;
    let res = send(
        app.http
            .post(app.url(&format!("/api/v1/patients/{}/medications", mine[0])))
            .bearer_auth(&ada)
            .json(&json!({"drug_name": "Metformin", "dose": "500 mg", "schedule": "twice daily", "started_on": "2026-09-01"})),
    )
    .await;
    assert_eq!(res.status(), 201);

    // Asynchronous only.
    outcome(
        call(app, "GET", "/fhir/R4/Patient/$export", &ada, None).await,
        400,
    )
    .await;
    let kick = |query: &'static str| {
        send(
            app.http
                .get(app.url(&format!("/fhir/R4/Patient/$export{query}")))
                .bearer_auth(&ada)
                .header("accept", FHIR)
                .header("prefer", "respond-async"),
        )
    };
    outcome(kick("?_type=Observation").await, 422).await;
    outcome(kick("?_since=yesterday").await, 422).await;
    let res = kick("").await;
    assert_eq!(res.status(), 202);
    let status_url = header(res.headers(), "content-location");
    assert!(
        status_url.starts_with(&app.url("/fhir/R4/$export-status/")),
        "{status_url}"
    );
    let manifest = poll_export(app, &status_url, &ada).await;
    assert_eq!(manifest["requiresAccessToken"], true);
    let outputs = manifest["output"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<(&str, u64)> = outputs
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap_or_default(),
                o["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // The care team's patients only (the listing's decision), not Bob's.
    assert_eq!(
        kinds,
        vec![("Patient", 2), ("MedicationStatement", 1)],
        "{manifest}"
    );
    let patients_url = outputs[0]["url"].as_str().unwrap_or_default().to_owned();
    let res = call(app, "GET", &patients_url, &ada, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(res.headers(), "content-type"),
        "application/fhir+ndjson"
    );
    let text = res.text().await.unwrap_or_default();
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(v["resourceType"], "Patient");
            v["id"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    ids.sort();
    let mut expected = mine.clone();
    expected.sort();
    assert_eq!(ids, expected);
    // Each exported patient's access log shows the disclosure.
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let log: Value = app
        .get(
            &format!("/api/v1/patients/{}/access-log", mine[1]),
            &compliance,
        )
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        log["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|e| e["action"] == "patient.export")),
        "{log}"
    );
    // Only the requester follows it: not a colleague, not another
    // organization, not without a token.
    for who in [bob.clone(), app.token(&app.org().await, Role::Admin)] {
        outcome(call(app, "GET", &status_url, &who, None).await, 404).await;
        outcome(call(app, "GET", &patients_url, &who, None).await, 404).await;
        outcome(call(app, "DELETE", &status_url, &who, None).await, 404).await;
    }
    outcome(send(app.http.get(&patients_url)).await, 401).await;
    // Cancel: the export and its files are gone.
    assert_eq!(
        call(app, "DELETE", &status_url, &ada, None).await.status(),
        202
    );
    outcome(call(app, "GET", &status_url, &ada, None).await, 404).await;
    outcome(call(app, "GET", &patients_url, &ada, None).await, 404).await;
    // Only what changed since: nothing yet.
    let res = kick("?_since=2999-01-01T00:00:00Z&_type=Patient").await;
    let status_url = header(res.headers(), "content-location");
    let manifest = poll_export(app, &status_url, &ada).await;
    assert!(
        manifest["output"].as_array().is_some_and(Vec::is_empty),
        "{manifest}"
    );
}

on_both_backends!(bulk_export_on, bulk_export);

/// The types and count of each file of a manifest.
fn files(manifest: &Value) -> Vec<(String, u64)> {
    manifest["output"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap_or_default().to_owned(),
                o["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// `Group/{id}/$export`: a care team's patient, or exactly what a consent
/// shares, for whoever may reach them; the request as the manifest says.
async fn group_export(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let mut ids = Vec::new();
    for given in ["Gra", "Grb"] {
        let (p, _) = json_of(
            call(app, "POST", "/fhir/R4/Patient", &ada, Some(&jane(given))).await,
            201,
        )
        .await;
        ids.push(p["id"].as_str().unwrap_or_default().to_owned());
    }
    let rest = |token: &str, path: String, body: Value| {
        send(app.http.post(app.url(&path)).bearer_auth(token).json(&body))
    };
    for p in &ids {
        let res = rest(&ada, format!("/api/v1/patients/{p}/medications"), json!({"drug_name": "Metformin", "dose": "500 mg", "schedule": "twice daily", "started_on": "2026-09-01"})).await;
        assert_eq!(res.status(), 201);
    }
    let kick = |token: String, group: String, query: &'static str| {
        send(
            app.http
                .get(app.url(&format!("/fhir/R4/Group/{group}/$export{query}")))
                .bearer_auth(token)
                .header("accept", FHIR)
                .header("prefer", "respond-async"),
        )
    };

    // A care team: its one patient, with its medications.
    let team = format!("care-team-{}", ids[0]);
    let res = kick(ada.clone(), team.clone(), "").await;
    assert_eq!(res.status(), 202);
    let manifest = poll_export(app, &header(res.headers(), "content-location"), &ada).await;
    assert_eq!(
        files(&manifest),
        vec![
            ("Patient".to_owned(), 1),
            ("MedicationStatement".to_owned(), 1)
        ]
    );
    assert!(
        manifest["request"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("/fhir/R4/Group/{team}/$export"))),
        "{manifest}"
    );
    // Outside the care team, another organization, unknown or malformed
    // groups: refused before anything starts.
    outcome(kick(bob.clone(), team.clone(), "").await, 403).await;
    outcome(
        kick(app.token(&app.org().await, Role::Admin), team.clone(), "").await,
        404,
    )
    .await;
    for group in [
        format!("care-team-{}", uuid::Uuid::new_v4()),
        format!("consent-{}", uuid::Uuid::new_v4()),
        ids[0].clone(),
        "care-team-x".to_owned(),
    ] {
        outcome(kick(ada.clone(), group, "").await, 404).await;
    }

    // A consent that shares medications only: the statements, never the
    // demographics, and only for those who manage the consent.
    let res = rest(&ada, format!("/api/v1/patients/{}/consents", ids[1]), json!({"recipient": "clinician-bob", "sections": ["medications"], "expires_at": day_at(30, 9)})).await;
    assert_eq!(res.status(), 201);
    let consent: Value = res.json().await.unwrap_or_default();
    let cid = format!("consent-{}", consent["id"].as_str().unwrap_or_default());
    let res = kick(ada.clone(), cid.clone(), "").await;
    assert_eq!(res.status(), 202);
    let status_url = header(res.headers(), "content-location");
    let manifest = poll_export(app, &status_url, &ada).await;
    assert_eq!(
        files(&manifest),
        vec![("MedicationStatement".to_owned(), 1)]
    );
    let url = manifest["output"][0]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let text = call(app, "GET", &url, &ada, None)
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(
        text.contains(&format!("Patient/{}", ids[1])) && !text.contains(&ids[0]),
        "{text}"
    );
    let oo = outcome(kick(ada.clone(), cid.clone(), "?_type=Patient").await, 422).await;
    assert_eq!(oo["issue"][0]["expression"][0], "_type");
    outcome(kick(bob.clone(), cid.clone(), "").await, 403).await;
    // Withdrawn: nothing more leaves under it.
    let res = rest(
        &admin,
        format!(
            "/api/v1/patients/{}/consents/{}/revoke",
            ids[1],
            consent["id"].as_str().unwrap_or_default()
        ),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    let oo = outcome(kick(ada.clone(), cid, "").await, 403).await;
    assert_eq!(
        oo["issue"][0]["details"]["coding"][0]["code"],
        "consent_inactive"
    );
    // Only one disclosure per exported patient and export: the group's.
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let log: Value = app
        .get(
            &format!("/api/v1/patients/{}/access-log", ids[1]),
            &compliance,
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    let exports = log["items"]
        .as_array()
        .map(|i| i.iter().filter(|e| e["action"] == "patient.export").count())
        .unwrap_or(0);
    assert_eq!(exports, 1, "{log}");
}

on_both_backends!(group_export_on, group_export);

/// Exports of `app`'s database started through the repository: they never
/// run, so they stay under way.
fn export_store(app: &TestApp) -> carapace_infra::exports::SeaExports {
    let sealer = carapace_phi_crypto::LocalSealer::new(&[7; 32]);
    let keys = carapace_infra::keys::KeyRing::new(app.db.clone(), std::sync::Arc::new(sealer));
    carapace_infra::exports::SeaExports::new(app.db.clone(), std::sync::Arc::new(keys))
}

/// An export of patients that expires in `secs` seconds.
fn export_until(secs: i64) -> carapace_clinical::export::NewExport {
    carapace_clinical::export::NewExport {
        request_url: "https://carapace.test/fhir/R4/Patient/$export".into(),
        types: vec![carapace_auth::smart::ResourceType::Patient],
        since: None,
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::seconds(secs),
        started_at: time::OffsetDateTime::now_utc(),
    }
}

/// `who` of `org`, as a repository caller.
fn as_subject(org: &crate::support::Org, who: &str) -> carapace_audit::Access {
    carapace_audit::Access::system(carapace_tenancy::TenantContext::new(
        org.id,
        carapace_tenancy::SubjectId::parse(who).unwrap_or_else(|e| panic!("{e}")),
    ))
}

/// Each running export holds its patients in memory: one caller may have
/// two under way (`RUNNING_MAX`). Six starts racing get two; a third is
/// refused over HTTP with 429 and `Retry-After`; another caller, and exports
/// past their time, are not counted.
async fn exports_at_once(app: &TestApp) {
    use carapace_clinical::ClinicalError;
    use carapace_clinical::export::ExportRepository as _;

    let org = app.org().await;
    let exports = export_store(app);
    let (ada, hour) = (as_subject(&org, "clinician-ada"), export_until(3600));
    let racing = futures_util::future::join_all((0..6).map(|_| exports.create(&ada, &hour))).await;
    let started = racing.iter().filter(|r| r.is_ok()).count();
    assert_eq!(started, 2, "{racing:?}");
    assert!(
        racing
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(ClinicalError::Busy(_)))),
        "{racing:?}"
    );

    let kick = |token: String| {
        send(
            app.http
                .get(app.url("/fhir/R4/Patient/$export"))
                .bearer_auth(token)
                .header("accept", FHIR)
                .header("prefer", "respond-async"),
        )
    };
    let refused = kick(app.token_as(&org, Role::Clinician, "clinician-ada")).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        kick(app.token_as(&org, Role::Clinician, "clinician-bob"))
            .await
            .status(),
        202,
        "another caller's exports are their own"
    );
    let dee = as_subject(&org, "clinician-dee");
    for _ in 0..2 {
        exports
            .create(&dee, &export_until(-1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        kick(app.token_as(&org, Role::Clinician, "clinician-dee"))
            .await
            .status(),
        202,
        "exports past their time hold no place"
    );

    // Two exports whose server stopped two minutes ago (never renewed):
    // they neither hold their caller's places nor stay in progress.
    let eve = as_subject(&org, "clinician-eve");
    let mut left = Vec::new();
    for _ in 0..2 {
        let mut new = export_until(3600);
        new.started_at -= time::Duration::minutes(2);
        left.push(
            exports
                .create(&eve, &new)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let eve_token = app.token_as(&org, Role::Clinician, "clinician-eve");
    assert_eq!(
        kick(eve_token.clone()).await.status(),
        202,
        "abandoned exports hold no place"
    );
    let ctx = carapace_tenancy::TenantContext::new(
        org.id,
        carapace_tenancy::SubjectId::parse("clinician-eve").unwrap_or_else(|e| panic!("{e}")),
    );
    let job = exports
        .get(&ctx, left[0], time::OffsetDateTime::now_utc())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the export is there"));
    assert_eq!(job.status, carapace_clinical::export::ExportStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some(carapace_clinical::export::ABANDONED)
    );
    let polled = app
        .get(&format!("/fhir/R4/$export-status/{}", left[1]), &eve_token)
        .await;
    assert_eq!(polled.status(), 500, "failed, not 202 in progress");
    let outcome: Value = polled.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(
        outcome["issue"][0]["diagnostics"],
        carapace_clinical::export::ABANDONED,
        "{outcome}"
    );
    // A live export is renewed by its server and stays in progress.
    assert!(
        !exports
            .renew(&ctx, left[0])
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "an abandoned export is not in progress to renew"
    );
    // Nor to complete, should its server come back to life: it stays failed.
    let completed = exports
        .finish(
            &ctx,
            left[0],
            carapace_clinical::export::ExportStatus::Complete,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!completed);
    let still = exports
        .get(&ctx, left[0], time::OffsetDateTime::now_utc())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|j| j.status);
    assert_eq!(still, Some(carapace_clinical::export::ExportStatus::Failed));
    let live = exports
        .create(&eve, &export_until(3600))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        exports
            .renew(&ctx, live)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
}

on_both_backends!(exports_at_once_on, exports_at_once);

/// Two servers on one database, each with its own pool, start exports for
/// one caller at the same moment: still no more than two.
#[tokio::test]
async fn two_servers_racing_start_no_more_than_two_exports_for_one_caller() {
    use carapace_clinical::export::ExportRepository as _;

    let Some(pg) = carapace_testkit::postgres_fresh("exports_two_servers", true).await else {
        return;
    };
    let one =
        crate::support::spawn_with(crate::support::settings_with(pg.app_url.clone()), None).await;
    let two =
        crate::support::spawn_with(crate::support::settings_with(pg.app_url.clone()), None).await;
    let org = one.org().await;
    let (a, b) = (export_store(&one), export_store(&two));
    let new = export_until(3600);
    // Each caller has one under way; then one start on each server at once,
    // both counting one: only one may succeed.
    for n in 0..10 {
        let who = as_subject(&org, &format!("clinician-{n}"));
        a.create(&who, &new).await.unwrap_or_else(|e| panic!("{e}"));
        let (x, y) = tokio::join!(a.create(&who, &new), b.create(&who, &new));
        assert!(x.is_ok() != y.is_ok(), "caller {n}: {x:?} {y:?}");
    }
    one.stop().await;
    two.stop().await;
}

/// An export file is PHI sent as raw NDJSON, not through the JSON path:
/// no cache may keep it either (the header policy stamps every answer).
#[tokio::test]
async fn an_export_file_is_never_cached() {
    let Some(app) = spawn_app(Backend::Sqlite, "export_file_no_store").await else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    json_of(
        call(
            &app,
            "POST",
            "/fhir/R4/Patient",
            &ada,
            Some(&jane("Nostore")),
        )
        .await,
        201,
    )
    .await;
    let res = send(
        app.http
            .get(app.url("/fhir/R4/Patient/$export?_type=Patient"))
            .bearer_auth(&ada)
            .header("accept", FHIR)
            .header("prefer", "respond-async"),
    )
    .await;
    assert_eq!(res.status(), 202);
    let manifest = poll_export(&app, &header(res.headers(), "content-location"), &ada).await;
    let url = manifest["output"][0]["url"].as_str().unwrap_or_default();
    let res = call(&app, "GET", url, &ada, None).await;
    assert_eq!(res.status(), 200, "{manifest}");
    assert_eq!(header(res.headers(), "cache-control"), "no-store");
    assert!(res.text().await.unwrap_or_default().contains("Nostore"));
    app.stop().await;
}
