//! Appointments: booking, reading, searching, including the patient.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, send, spawn_app};

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

/// `PUT` changes the time or the status, one at a time, through the REST
/// reschedule and cancel; anything else is refused naming the element and
/// leaves the appointment as it was. Versions read back, old ones do not.
async fn appointments_update_and_vread(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let (p, _) = json_of(
        call(app, "POST", "/fhir/R4/Patient", &ada, Some(&jane("Una"))).await,
        201,
    )
    .await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let (a, _) = json_of(
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
    let aid = a["id"].as_str().unwrap_or_default().to_owned();
    let url = format!("/fhir/R4/Appointment/{aid}");
    let v1 = a["meta"]["versionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (at_v1, _) = json_of(
        call(app, "GET", &format!("{url}/_history/{v1}"), &ada, None).await,
        200,
    )
    .await;
    assert_eq!(at_v1, a);

    // The same body: nothing changes.
    let (same, _) = json_of(call(app, "PUT", &url, &ada, Some(&a)).await, 200).await;
    assert_eq!(same["meta"]["versionId"], v1.as_str());
    // Replacing is writing: one who may only read it may not, even unchanged.
    let viewer = app.token(&org, Role::Viewer);
    json_of(call(app, "GET", &url, &viewer, None).await, 200).await;
    outcome(call(app, "PUT", &url, &viewer, Some(&a)).await, 403).await;

    // What may not change is refused, naming it, and nothing is written.
    let edits: [(&str, Edit); 5] = [
        ("Appointment.participant", |b| {
            b["participant"][1]["actor"]["identifier"]["value"] = "clinician-bob".into()
        }),
        ("Appointment.reasonCode", |b| {
            b["reasonCode"][0]["text"] = "something else".into()
        }),
        ("Appointment.extension", |b| {
            b["extension"][0]["valueString"] = "UTC".into()
        }),
        ("Appointment.status", |b| {
            b["status"] = "cancelled".into();
            b["start"] = day_at(4, 9).into();
            b["end"] = day_at(4, 10).into();
        }),
        ("Appointment.id", |b| {
            b["id"] = uuid::Uuid::new_v4().to_string().into()
        }),
    ];
    for (element, edit) in edits {
        let mut body = a.clone();
        edit(&mut body);
        let oo = outcome(call(app, "PUT", &url, &ada, Some(&body)).await, 422).await;
        assert_eq!(oo["issue"][0]["expression"][0], element, "{oo}");
    }
    let res = app
        .http
        .put(app.url(&url))
        .bearer_auth(&ada)
        .header("content-type", FHIR)
        .header("if-match", format!("W/\"{v1}\""))
        .body(a.to_string());
    outcome(send(res).await, 422).await;
    let (unchanged, _) = json_of(call(app, "GET", &url, &ada, None).await, 200).await;
    assert_eq!(unchanged, a);

    // Another time: rescheduled (a new version; the old one is gone).
    let mut later = a.clone();
    later["start"] = day_at(4, 14).into();
    later["end"] = day_at(4, 15).into();
    let (moved, h) = json_of(call(app, "PUT", &url, &ada, Some(&later)).await, 200).await;
    assert_eq!(moved["start"], day_at(4, 14));
    let v2 = moved["meta"]["versionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(v2, v1);
    assert_eq!(header(&h, "etag"), format!("W/\"{v2}\""));
    outcome(
        call(app, "GET", &format!("{url}/_history/{v1}"), &ada, None).await,
        404,
    )
    .await;
    json_of(
        call(app, "GET", &format!("{url}/_history/{v2}"), &ada, None).await,
        200,
    )
    .await;
    // Onto another booking of the practitioner: the conflict rule.
    json_of(
        call(
            app,
            "POST",
            "/fhir/R4/Appointment",
            &ada,
            Some(&visit(&pid, "clinician-ada", 5, 9)),
        )
        .await,
        201,
    )
    .await;
    let mut clash = moved.clone();
    clash["start"] = day_at(5, 9).into();
    clash["end"] = day_at(5, 10).into();
    let oo = outcome(call(app, "PUT", &url, &ada, Some(&clash)).await, 409).await;
    assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "slot_taken");

    // Someone outside the care team may not change it; another
    // organization does not find it.
    let mut cancel = moved.clone();
    cancel["status"] = "cancelled".into();
    let cy = app.token_as(&org, Role::Clinician, "clinician-cy");
    outcome(call(app, "PUT", &url, &cy, Some(&cancel)).await, 403).await;
    let other = app.org().await;
    let stranger = app.token(&other, Role::Admin);
    outcome(call(app, "PUT", &url, &stranger, Some(&cancel)).await, 404).await;
    outcome(
        call(app, "GET", &format!("{url}/_history/{v2}"), &stranger, None).await,
        404,
    )
    .await;

    // Cancelled: the REST cancel's event, and an end state stays put.
    let res = call(app, "PUT", &url, &ada, Some(&cancel)).await;
    let request = header(res.headers(), "x-request-id");
    let (cancelled, _) = json_of(res, 200).await;
    assert_eq!(cancelled["status"], "cancelled");
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let page: Value = app
        .get(
            "/api/v1/audit-events?limit=500&action=appointment.cancel",
            &compliance,
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    assert!(
        page["items"].as_array().is_some_and(|i| i
            .iter()
            .any(|e| e["origin"]["request_id"] == request && e["outcome"] == "allowed")),
        "{page}"
    );
    let mut revive = cancelled.clone();
    revive["status"] = "booked".into();
    let oo = outcome(call(app, "PUT", &url, &ada, Some(&revive)).await, 409).await;
    assert_eq!(
        oo["issue"][0]["details"]["coding"][0]["code"],
        "invalid_transition"
    );
}

on_both_backends!(
    appointments_update_and_vread_on,
    appointments_update_and_vread
);
