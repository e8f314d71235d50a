//! Every FHIR search (and `$export`) takes only the parameters it
//! declares, each as often as it may stand: a misspelt or differently
//! cased name, a repeated one, a third date bound, the patient named twice
//! under two names or two spellings are refused with an OperationOutcome
//! naming the parameter, whichever resource is searched.

use carapace_auth::Role;

use super::{FHIR, call, outcome};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, send, spawn_app};

async fn every_search_refuses_what_it_does_not_declare(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let clinician = app.token(&org, Role::Clinician);
    let p = uuid::Uuid::now_v7();
    let twice = format!("patient=Patient/{p}&patient=Patient/{p}");
    let both = format!("patient=Patient/{p}&subject=Patient/{p}");
    // Names are counted as decoded: a percent-encoded spelling is the
    // same parameter given twice.
    let encoded = format!("patient=Patient/{p}&pati%65nt=Patient/{p}");
    let dates = "date=ge2026-01-01&date=ge2026-02-01&date=le2027-01-01";
    let cases: &[(&str, &str, &str, &str)] = &[
        ("Patient", "Family=Roe", "Family", &admin),
        ("Patient", "_id=a&_id=a", "_id", &admin),
        (
            "Patient",
            "identifier=a|1&identifier=b|2",
            "identifier",
            &admin,
        ),
        ("Patient", "_cursor=a&_cursor=b", "_cursor", &admin),
        ("Appointment", dates, "date", &admin),
        ("Appointment", &twice, "patient", &admin),
        ("Appointment", &encoded, "patient", &admin),
        ("CareTeam", &encoded, "patient", &admin),
        (
            "Appointment",
            "status=booked&status=booked",
            "status",
            &admin,
        ),
        (
            "Appointment",
            "_include=Appointment:practitioner",
            "_include",
            &admin,
        ),
        (
            "Appointment",
            "patient:missing=true",
            "patient:missing",
            &admin,
        ),
        ("AuditEvent", dates, "date", &admin),
        ("AuditEvent", "outcome=0&outcome=4", "outcome", &admin),
        ("AuditEvent", "action=R&action=C", "action", &admin),
        ("CareTeam", &both, "subject", &admin),
        ("CareTeam", "", "patient", &admin),
        ("MedicationStatement", &twice, "patient", &admin),
        (
            "AdverseEvent",
            "subject=Patient/not-an-id",
            "subject",
            &admin,
        ),
        (
            "Consent",
            &format!("subject=Patient/{p}"),
            "subject",
            &admin,
        ),
        ("Practitioner", "active=true&active=false", "active", &admin),
        ("Practitioner", "name=Ada", "name", &admin),
        (
            "Task",
            "status=requested&status=requested",
            "status",
            &admin,
        ),
        ("Task", "owner=me", "owner", &admin),
        ("ServiceRequest", "performer=me", "performer", &clinician),
    ];
    for (resource, query, named, token) in cases {
        let path = format!("/fhir/R4/{resource}?{query}");
        let oo = outcome(call(app, "GET", &path, token, None).await, 422).await;
        assert_eq!(oo["issue"][0]["expression"][0], *named, "{path}: {oo}");
    }
    // `$export`: the same rule, and a format it does not write.
    for (query, named) in [
        ("_type=Patient&_type=Patient", "_type"),
        ("_outputFormat=application/fhir+json", "_outputFormat"),
        ("_since=2026-01-01T00:00:00Z&_elements=id", "_elements"),
    ] {
        let res = send(
            app.http
                .get(app.url(&format!("/fhir/R4/Patient/$export?{query}")))
                .bearer_auth(&admin)
                .header("accept", FHIR)
                .header("prefer", "respond-async"),
        )
        .await;
        let oo = outcome(res, 422).await;
        assert_eq!(oo["issue"][0]["expression"][0], named, "{query}: {oo}");
    }
}

on_both_backends!(
    every_search_refuses_what_it_does_not_declare_on,
    every_search_refuses_what_it_does_not_declare
);
