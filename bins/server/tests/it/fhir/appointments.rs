//! Appointments: booking, reading, searching, including the patient.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, spawn_app};

fn visit(patient: &str, practitioner: &str, days: i64, hour: u8) -> Value {
    json!({
        "resourceType": "Appointment",
        "status": "booked",
        "extension": [{"url": "urn:carapace:fhir:time-zone", "valueString": "Europe/Berlin"}],
        "reasonCode": [{"text": "Vexillary tremor follow-up"}],
        "start": day_at(days, hour),
        "end": day_at(days, hour + 1),
        "participant": [
            {"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
            {"actor": {"identifier": {"system": "urn:carapace:subject", "value": practitioner}}, "status": "accepted"},
        ],
    })
}

async fn appointments_book_read_search_and_include(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let (p, _) = json_of(
        call(app, "POST", "/fhir/R4/Patient", &ada, Some(&jane("Ida"))).await,
        201,
    )
    .await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let res = call(
        app,
        "POST",
        "/fhir/R4/Appointment",
        &ada,
        Some(&visit(&pid, "clinician-ada", 1, 9)),
    )
    .await;
    let (a, h) = json_of(res, 201).await;
    let aid = a["id"].as_str().unwrap_or_default().to_owned();
    assert!(header(&h, "location").contains(&format!("/fhir/R4/Appointment/{aid}/_history/")));
    assert_eq!(a["status"], "booked");
    assert_eq!(a["start"], day_at(1, 9));
    assert_eq!(
        a["participant"][0]["actor"]["reference"],
        format!("Patient/{pid}")
    );
    // The same slot again: the database's conflict rule, as a 409.
    let oo = outcome(
        call(
            app,
            "POST",
            "/fhir/R4/Appointment",
            &ada,
            Some(&visit(&pid, "clinician-ada", 1, 9)),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(oo["issue"][0]["code"], "conflict");
    assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "slot_taken");
    // Not in the care team: the same refusal as REST, naming the element.
    let oo = outcome(
        call(
            app,
            "POST",
            "/fhir/R4/Appointment",
            &ada,
            Some(&visit(&pid, "clinician-bob", 2, 9)),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(oo["issue"][0]["expression"][0], "Appointment.participant");
    let (b, _) = json_of(
        call(
            app,
            "POST",
            "/fhir/R4/Appointment",
            &ada,
            Some(&visit(&pid, "clinician-ada", 3, 9)),
        )
        .await,
        201,
    )
    .await;

    let (read, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Appointment/{aid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(read, a);
    let rest: Value = app
        .get(&format!("/api/v1/appointments/{aid}"), &ada)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rest["start"], a["start"]);

    // Search by patient with the patient included (a patient read each).
    let path =
        format!("/fhir/R4/Appointment?patient=Patient/{pid}&_include=Appointment:patient&_count=1");
    let (bundle, _) = json_of(call(app, "GET", &path, &ada, None).await, 200).await;
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{bundle}");
    assert_eq!(entries[0]["search"]["mode"], "match");
    assert_eq!(entries[1]["search"]["mode"], "include");
    assert_eq!(entries[1]["resource"]["id"], pid.as_str());
    let next = bundle["link"][1]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (page2, _) = json_of(call(app, "GET", &next, &ada, None).await, 200).await;
    assert_eq!(page2["entry"][0]["resource"]["id"], b["id"]);
    // By day, by status, by practitioner.
    let by_day = format!(
        "/fhir/R4/Appointment?practitioner=clinician-ada&date={}",
        &day_at(1, 9)[..10]
    );
    let (bundle, _) = json_of(call(app, "GET", &by_day, &ada, None).await, 200).await;
    assert_eq!(
        bundle["entry"].as_array().map(Vec::len),
        Some(1),
        "{bundle}"
    );
    let (bundle, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Appointment?patient={pid}&status=cancelled"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(bundle.get("entry").is_none(), "{bundle}");
    let (bundle, _) = json_of(
        call(
            app,
            "GET",
            &format!(
                "/fhir/R4/Appointment?patient={pid}&date=ge{}&date=lt{}",
                day_at(2, 0),
                day_at(9, 0)
            ),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(bundle["entry"][0]["resource"]["id"], b["id"]);
    for bad in [
        "status=maybe",
        "date=tomorrow",
        "_include=Appointment:practitioner",
        "patient=x",
        "nonsense=1",
    ] {
        outcome(
            call(
                app,
                "GET",
                &format!("/fhir/R4/Appointment?{bad}"),
                &ada,
                None,
            )
            .await,
            422,
        )
        .await;
    }

    // Another organization sees none of it.
    let other = app.org().await;
    let theirs = app.token(&other, Role::Admin);
    outcome(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Appointment/{aid}"),
            &theirs,
            None,
        )
        .await,
        404,
    )
    .await;
    outcome(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Appointment?patient={pid}"),
            &theirs,
            None,
        )
        .await,
        404,
    )
    .await;
    let (all, _) = json_of(
        call(app, "GET", "/fhir/R4/Appointment", &theirs, None).await,
        200,
    )
    .await;
    assert!(all.get("entry").is_none(), "{all}");
    // A clinician outside the care team reads neither the appointment nor
    // the patient through an include.
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    outcome(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Appointment/{aid}"),
            &bob,
            None,
        )
        .await,
        403,
    )
    .await;
    let (own, _) = json_of(
        call(
            app,
            "GET",
            "/fhir/R4/Appointment?_include=Appointment:patient",
            &bob,
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(own.get("entry").is_none(), "{own}");
}

on_both_backends!(
    appointments_book_read_search_and_include_on,
    appointments_book_read_search_and_include
);
