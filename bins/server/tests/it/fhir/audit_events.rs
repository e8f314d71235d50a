//! The audit trail as AuditEvents, for compliance.

use carapace_auth::Role;
use serde_json::Value;

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, spawn_app};

async fn audit_events_for_compliance(app: &TestApp) {
    let org = app.org().await;
    let clinician = app.token_as(&org, Role::Clinician, "clinician-ada");
    let (p, _) = json_of(
        call(
            app,
            "POST",
            "/fhir/R4/Patient",
            &clinician,
            Some(&jane("Una")),
        )
        .await,
        201,
    )
    .await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Patient/{pid}"),
            &clinician,
            None,
        )
        .await,
        200,
    )
    .await;
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    // The patient's trail: who created and read it, as FHIR.
    let path = format!("/fhir/R4/AuditEvent?patient=Patient/{pid}&_count=1");
    let (bundle, _) = json_of(call(app, "GET", &path, &compliance, None).await, 200).await;
    let first = bundle["entry"][0]["resource"].clone();
    assert_eq!(first["resourceType"], "AuditEvent");
    assert_eq!(
        first["entity"][0]["what"]["reference"],
        format!("Patient/{pid}")
    );
    assert_eq!(
        first["agent"][0]["who"]["identifier"]["value"],
        "clinician-ada"
    );
    assert_eq!(first["outcome"], "0");
    let next = bundle["link"][1]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (second, _) = json_of(call(app, "GET", &next, &compliance, None).await, 200).await;
    assert_eq!(
        second["entry"][0]["resource"]["subtype"][0]["code"],
        "patient.read"
    );
    assert_eq!(second["entry"][0]["resource"]["action"], "R");
    // One event by id, and filters by agent, action and date.
    let id = first["id"].as_str().unwrap_or_default();
    let (one, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/AuditEvent/{id}"),
            &compliance,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(one, first);
    let by = format!(
        "/fhir/R4/AuditEvent?agent=clinician-ada&subtype=urn:carapace:audit-action%7Cpatient.read&date=ge{}",
        &day_at(-1, 0)[..10]
    );
    let (reads, _) = json_of(call(app, "GET", &by, &compliance, None).await, 200).await;
    assert_eq!(reads["entry"].as_array().map(Vec::len), Some(1), "{reads}");
    let (none, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/AuditEvent?patient={pid}&date=lt2000-01-01"),
            &compliance,
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(none.get("entry").is_none());
    // Reading the trail is itself recorded, as on REST.
    let rest = app
        .get(
            "/api/v1/audit-events?action=audit.read&limit=500",
            &compliance,
        )
        .await;
    let page: Value = rest.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        page["items"].as_array().is_some_and(|items| items
            .iter()
            .any(|e| e["detail"].as_str().is_some_and(|d| d.starts_with("fhir:")))),
        "{page}"
    );
    // Clinicians may not read the trail; another organization sees nothing.
    outcome(
        call(app, "GET", "/fhir/R4/AuditEvent", &clinician, None).await,
        403,
    )
    .await;
    let other = app.org().await;
    let theirs = app.token(&other, Role::Compliance);
    outcome(
        call(
            app,
            "GET",
            &format!("/fhir/R4/AuditEvent/{id}"),
            &theirs,
            None,
        )
        .await,
        404,
    )
    .await;
    let (foreign, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/AuditEvent?patient={pid}"),
            &theirs,
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(foreign.get("entry").is_none(), "{foreign}");
    for bad in [
        "action=R",
        "outcome=maybe",
        "date=yesterday",
        "patient=x",
        "_count=501",
    ] {
        outcome(
            call(
                app,
                "GET",
                &format!("/fhir/R4/AuditEvent?{bad}"),
                &compliance,
                None,
            )
            .await,
            422,
        )
        .await;
    }
}

on_both_backends!(audit_events_for_compliance_on, audit_events_for_compliance);
