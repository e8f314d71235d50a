//! Practitioners: the organization's clinicians with local accounts, for
//! its user administrators only.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, send, spawn_app};

async fn invite(app: &TestApp, admin: &str, email: &str, role: &str) -> String {
    let res = send(
        app.http
            .post(app.url("/api/v1/users"))
            .bearer_auth(admin)
            .json(&json!({"email": email, "roles": [role]})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap_or_default();
    body["id"].as_str().unwrap_or_default().to_owned()
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn practitioners_are_local_clinicians(app: &TestApp) {
    let (org, other) = (app.org().await, app.org().await);
    let admin = app.token(&org, Role::Admin);
    let doc = invite(app, &admin, "doc@example.org", "clinician").await;
    let nurse = invite(app, &admin, "nurse@example.org", "staff").await;
    let elsewhere = invite(
        app,
        &app.token(&other, Role::Admin),
        "doc@other.example",
        "clinician",
    )
    .await;

    let (all, _) = json_of(
        call(app, "GET", "/fhir/R4/Practitioner", &admin, None).await,
        200,
    )
    .await;
    assert_eq!(ids(&all), vec![doc.clone()]);
    let (one, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Practitioner/{doc}"),
            &admin,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(one, all["entry"][0]["resource"]);
    assert_eq!(one["identifier"][0]["system"], "urn:carapace:subject");
    assert_eq!(one["identifier"][0]["value"], doc.as_str());
    assert_eq!(one["telecom"][0]["value"], "doc@example.org");
    assert_eq!(one["active"], true);
    let by_subject = format!("/fhir/R4/Practitioner?identifier=urn:carapace:subject|{doc}");
    let (found, _) = json_of(call(app, "GET", &by_subject, &admin, None).await, 200).await;
    assert_eq!(ids(&found), vec![doc.clone()]);
    let (inactive, _) = json_of(
        call(
            app,
            "GET",
            "/fhir/R4/Practitioner?active=false",
            &admin,
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(ids(&inactive).is_empty());
    let deactivated = send(
        app.http
            .post(app.url(&format!("/api/v1/users/{doc}/deactivate")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(deactivated.status(), 204);
    let (inactive, _) = json_of(
        call(
            app,
            "GET",
            "/fhir/R4/Practitioner?active=false",
            &admin,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(ids(&inactive), vec![doc.clone()]);

    // Staff are no practitioners; another organization's clinician is not
    // found here; clinicians do not administer users.
    for id in [&nurse, &elsewhere] {
        outcome(
            call(
                app,
                "GET",
                &format!("/fhir/R4/Practitioner/{id}"),
                &admin,
                None,
            )
            .await,
            404,
        )
        .await;
    }
    let clinician = app.token(&org, Role::Clinician);
    outcome(
        call(app, "GET", "/fhir/R4/Practitioner", &clinician, None).await,
        403,
    )
    .await;
    let bad = outcome(
        call(
            app,
            "GET",
            "/fhir/R4/Practitioner?active=maybe",
            &admin,
            None,
        )
        .await,
        422,
    )
    .await;
    assert_eq!(bad["issue"][0]["expression"][0], "active");
    outcome(
        call(app, "GET", "/fhir/R4/Practitioner?name=Doc", &admin, None).await,
        422,
    )
    .await;
}

on_both_backends!(
    practitioners_are_local_clinicians_on,
    practitioners_are_local_clinicians
);
