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
    // By kind: the patient was created (C) and read (R); the trail has
    // reads of itself and sign-ins (E) but nothing of theirs deleted.
    let kinds = |k: &'static str| {
        let path = format!("/fhir/R4/AuditEvent?patient=Patient/{pid}&action={k}");
        let compliance = compliance.clone();
        async move {
            let (b, _) = json_of(call(app, "GET", &path, &compliance, None).await, 200).await;
            b["entry"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    assert_eq!(e["resource"]["action"], k, "{e}");
                    e["resource"]["subtype"][0]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(kinds("C").await, vec!["patient.create"]);
    assert_eq!(kinds("R").await, vec!["patient.read"]);
    assert!(kinds("D").await.is_empty());
    // A refusal is a security event: of no C/R/U/D kind.
    outcome(
        call(app, "GET", "/fhir/R4/AuditEvent", &clinician, None).await,
        403,
    )
    .await;
    let everything = "/fhir/R4/AuditEvent?action=E&_count=500";
    let (executed, _) = json_of(call(app, "GET", everything, &compliance, None).await, 200).await;
    let executed = executed["entry"].as_array().cloned().unwrap_or_default();
    assert!(!executed.is_empty());
    for e in executed {
        assert_eq!(e["resource"]["action"], "E", "{e}");
    }
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
        "action=X",
        "action=r",
        "action=R&action=C",
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

/// A search's query is checked once, at the door, for every search that
/// parses it there: too many parameters, too long a query and a format
/// other than JSON are refused as OperationOutcomes, and an anonymous
/// caller learns nothing of the parser (401 first).
async fn searches_refuse_oversized_queries_at_the_door(app: &TestApp) {
    let org = app.org().await;
    let clinician = app.token(&org, Role::Clinician);
    let compliance = app.token(&org, Role::Compliance);
    let many = (0..17)
        .map(|i| format!("p{i}=1"))
        .collect::<Vec<_>>()
        .join("&");
    let long = format!("_count={}", "9".repeat(2100));
    for (resource, token) in [
        ("Patient", &clinician),
        ("Appointment", &clinician),
        ("AuditEvent", &compliance),
    ] {
        for (query, status) in [
            (many.as_str(), 400),
            (long.as_str(), 400),
            ("_format=xml", 422),
        ] {
            let path = format!("/fhir/R4/{resource}?{query}");
            outcome(call(app, "GET", &path, token, None).await, status).await;
            let anonymous = call(app, "GET", &path, "", None).await;
            assert_eq!(anonymous.status().as_u16(), 401, "{resource}?{query}");
        }
    }
}

on_both_backends!(
    searches_refuse_oversized_queries_at_the_door_on,
    searches_refuse_oversized_queries_at_the_door
);
