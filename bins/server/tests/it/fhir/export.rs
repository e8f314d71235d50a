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
