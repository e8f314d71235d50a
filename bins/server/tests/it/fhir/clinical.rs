//! Care teams, medications and side effects.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, send, spawn_app};

async fn care_teams_medications_and_side_effects(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let (p, _) = json_of(
        call(app, "POST", "/fhir/R4/Patient", &ada, Some(&jane("Mia"))).await,
        201,
    )
    .await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let post = |path: String, body: Value| {
        send(app.http.post(app.url(&path)).bearer_auth(&ada).json(&body))
    };
    let res = post(
        format!("/api/v1/patients/{pid}/medications"),
        json!({"drug_name": "Lisinopril", "dose": "10 mg", "schedule": "once daily", "started_on": "2026-10-01", "stopped_on": "2026-10-20"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let res = post(
        format!("/api/v1/patients/{pid}/side-effects"),
        json!({"symptom": "Dry cough", "severity": "moderate", "onset_on": "2026-10-05"}),
    )
    .await;
    assert_eq!(res.status(), 201);

    let (team, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/CareTeam?patient=Patient/{pid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    let t = &team["entry"][0]["resource"];
    assert_eq!(t["id"], pid.as_str());
    assert_eq!(
        t["participant"][0]["member"]["identifier"]["value"],
        "clinician-ada"
    );
    let (read, _) = json_of(
        call(app, "GET", &format!("/fhir/R4/CareTeam/{pid}"), &ada, None).await,
        200,
    )
    .await;
    assert_eq!(&read, t);
    let (meds, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/MedicationStatement?patient={pid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    let m = &meds["entry"][0]["resource"];
    assert_eq!(m["medicationCodeableConcept"]["text"], "Lisinopril");
    assert_eq!(m["status"], "completed");
    assert_eq!(m["effectivePeriod"]["end"], "2026-10-20");
    let (effects, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/AdverseEvent?subject=Patient/{pid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    let e = &effects["entry"][0]["resource"];
    assert_eq!(e["event"]["text"], "Dry cough");
    assert_eq!(e["severity"]["coding"][0]["code"], "moderate");
    assert_eq!(e["actuality"], "actual");
    // Each reads back by its id, with the search's decision and event.
    let (mid, eid) = (
        m["id"].as_str().unwrap_or_default().to_owned(),
        e["id"].as_str().unwrap_or_default().to_owned(),
    );
    let res = call(
        app,
        "GET",
        &format!("/fhir/R4/MedicationStatement/{mid}"),
        &ada,
        None,
    )
    .await;
    let request = header(res.headers(), "x-request-id");
    assert_eq!(&json_of(res, 200).await.0, m);
    assert_eq!(
        events_of(app, &org, &request).await,
        vec![("medication.read".to_owned(), "allowed".to_owned())]
    );
    let (read, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/AdverseEvent/{eid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(&read, e);
    // One kind's id is no record of the other kind; unknown ids neither.
    for path in [
        format!("/fhir/R4/MedicationStatement/{eid}"),
        format!("/fhir/R4/AdverseEvent/{mid}"),
        format!("/fhir/R4/AdverseEvent/{}", uuid::Uuid::new_v4()),
        "/fhir/R4/AdverseEvent/not-an-id".to_owned(),
    ] {
        outcome(call(app, "GET", &path, &ada, None).await, 404).await;
    }

    // Outside the care team, and in another organization: nothing.
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    for path in [
        format!("/fhir/R4/CareTeam?patient={pid}"),
        format!("/fhir/R4/CareTeam/{pid}"),
        format!("/fhir/R4/MedicationStatement?patient={pid}"),
        format!("/fhir/R4/AdverseEvent?subject={pid}"),
        format!("/fhir/R4/MedicationStatement/{mid}"),
        format!("/fhir/R4/AdverseEvent/{eid}"),
    ] {
        outcome(call(app, "GET", &path, &bob, None).await, 403).await;
        let other = app.org().await;
        outcome(
            call(app, "GET", &path, &app.token(&other, Role::Admin), None).await,
            404,
        )
        .await;
    }
    for bad in [
        "/fhir/R4/MedicationStatement",
        "/fhir/R4/MedicationStatement?code=x",
        "/fhir/R4/CareTeam?patient=a&patient=b",
        "/fhir/R4/AdverseEvent?subject=nope",
    ] {
        outcome(call(app, "GET", bad, &ada, None).await, 422).await;
    }
}

on_both_backends!(
    care_teams_medications_and_side_effects_on,
    care_teams_medications_and_side_effects
);

async fn verification_tasks_for_staff(app: &TestApp) {
    let org = app.org().await;
    let staff = app.token(&org, Role::Staff);
    let (p, _) = json_of(
        call(
            app,
            "POST",
            "/fhir/R4/Patient",
            &app.token(&org, Role::Admin),
            Some(&jane("Tia")),
        )
        .await,
        201,
    )
    .await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let created = send(
        app.http
            .post(app.url("/api/v1/verification-tasks"))
            .bearer_auth(&staff)
            .json(&json!({"patient_id": pid, "payer_name": "Acme Health", "payer_phone": "+1 800 555 0199",
                          "plan": "Gold PPO", "procedure_codes": ["99213", "J3490"]})),
    )
    .await;
    assert_eq!(created.status(), 201);
    let task: Value = created.json().await.unwrap_or_else(|e| panic!("{e}"));
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    let (read, _) = json_of(
        call(app, "GET", &format!("/fhir/R4/Task/{id}"), &staff, None).await,
        200,
    )
    .await;
    assert_eq!(read["status"], "requested");
    assert_eq!(read["intent"], "order");
    assert_eq!(read["for"]["reference"], format!("Patient/{pid}"));
    assert_eq!(
        read["input"][3]["valueCodeableConcept"]["coding"][0]["code"],
        "99213"
    );
    let (found, _) = json_of(
        call(app, "GET", "/fhir/R4/Task?status=requested", &staff, None).await,
        200,
    )
    .await;
    assert_eq!(found["entry"][0]["resource"], read);
    let (none, _) = json_of(
        call(app, "GET", "/fhir/R4/Task?status=completed", &staff, None).await,
        200,
    )
    .await;
    assert!(none.get("entry").is_none(), "{none}");
    outcome(
        call(app, "GET", "/fhir/R4/Task?status=done", &staff, None).await,
        422,
    )
    .await;
    // Clinicians do not manage tasks; another organization sees none.
    outcome(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Task/{id}"),
            &app.token(&org, Role::Clinician),
            None,
        )
        .await,
        403,
    )
    .await;
    let other = app.org().await;
    outcome(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Task/{id}"),
            &app.token(&other, Role::Staff),
            None,
        )
        .await,
        404,
    )
    .await;

    // The calling bot: its minimal view of the task it claimed, nothing of
    // the full one.
    let key = |token: String| async move {
        let res = send(
            app.http
                .post(app.url("/api/v1/service-keys"))
                .bearer_auth(&token)
                .json(&json!({"name": "voice bot", "roles": ["service"]})),
        )
        .await;
        let body: Value = res.json().await.unwrap_or_default();
        body["key"].as_str().unwrap_or_default().to_owned()
    };
    let bot = key(app.token(&org, Role::Admin)).await;
    let foreign_bot = key(app.token(&other, Role::Admin)).await;
    let view = format!("/fhir/R4/Task/{id}/$bot-view");
    // Not before it claims the task.
    outcome(call(app, "GET", &view, &bot, None).await, 404).await;
    let claimed = send(
        app.http
            .post(app.url(&format!("/api/v1/verification-tasks/{id}/claim")))
            .bearer_auth(&bot)
            .json(&json!({})),
    )
    .await;
    assert_eq!(claimed.status(), 204);
    let (minimal, _) = json_of(call(app, "GET", &view, &bot, None).await, 200).await;
    assert_eq!(minimal["status"], "accepted");
    assert_eq!(minimal["for"]["reference"], "#patient");
    let patient = &minimal["contained"][0];
    assert_eq!(patient["name"][0]["text"], "Tia Roe");
    assert_eq!(patient["birthDate"], "1980-02-03");
    assert_eq!(patient["identifier"][0]["value"], "M-Tia");
    // No id, contact, requester or anything verifying does not need.
    for absent in ["telecom", "gender"] {
        assert!(patient.get(absent).is_none(), "{absent}: {patient}");
    }
    for absent in ["requester", "owner", "authoredOn", "output", "meta"] {
        assert!(minimal.get(absent).is_none(), "{absent}: {minimal}");
    }
    assert!(!minimal.to_string().contains(&pid), "the patient's id");
    let names: Vec<&str> = minimal["input"]
        .as_array()
        .map(|i| {
            i.iter()
                .filter_map(|x| x["type"]["text"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        names,
        vec![
            "payer_name",
            "payer_phone",
            "plan",
            "procedure_code",
            "procedure_code"
        ]
    );
    outcome(call(app, "GET", &view, &foreign_bot, None).await, 404).await;
    outcome(call(app, "GET", &view, &staff, None).await, 403).await;
    outcome(
        call(app, "GET", &format!("/fhir/R4/Task/{id}"), &bot, None).await,
        403,
    )
    .await;
}

on_both_backends!(
    verification_tasks_for_staff_on,
    verification_tasks_for_staff
);

fn statement(patient: &str, end: Option<&str>, status: &str) -> Value {
    let mut period = json!({"start": "2026-10-01"});
    if let Some(end) = end {
        period["end"] = end.into();
    }
    json!({
        "resourceType": "MedicationStatement",
        "status": status,
        "medicationCodeableConcept": {"text": "Atorvastatin"},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectivePeriod": period,
        "dosage": [{"text": "20 mg", "timing": {"code": {"text": "at night"}}}],
    })
}

/// Statements and side effects recorded through FHIR: the REST use cases'
/// decisions, every refused element named, nothing written when refused.
async fn medications_recorded_through_fhir(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let (p, _) = json_of(
        call(app, "POST", "/fhir/R4/Patient", &ada, Some(&jane("Rec"))).await,
        201,
    )
    .await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let res = call(
        app,
        "POST",
        "/fhir/R4/MedicationStatement",
        &ada,
        Some(&statement(&pid, None, "active")),
    )
    .await;
    let (made, h) = json_of(res, 201).await;
    let mid = made["id"].as_str().unwrap_or_default().to_owned();
    assert!(header(&h, "location").ends_with(&format!("/fhir/R4/MedicationStatement/{mid}")));
    assert_eq!(made["dosage"][0]["timing"]["code"]["text"], "at night");
    let (read, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/MedicationStatement/{mid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(read, made);
    let (done, _) = json_of(
        call(
            app,
            "POST",
            "/fhir/R4/MedicationStatement",
            &ada,
            Some(&statement(&pid, Some("2026-10-20"), "completed")),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(done["status"], "completed");

    // Refused, each naming its element, and nothing written.
    let cases: [(&str, Value); 6] = [
        (
            "MedicationStatement.status",
            statement(&pid, Some("2026-10-20"), "active"),
        ),
        (
            "MedicationStatement.effectivePeriod.end",
            statement(&pid, Some("2026-09-01"), "completed"),
        ),
        ("MedicationStatement.note", {
            let mut b = statement(&pid, None, "active");
            b["note"] = json!([{"text": "x"}]);
            b
        }),
        ("MedicationStatement.dosage", {
            let mut b = statement(&pid, None, "active");
            b.as_object_mut().map(|o| o.remove("dosage"));
            b
        }),
        (
            "MedicationStatement.subject",
            statement("Group/1", None, "active"),
        ),
        ("MedicationStatement.medicationCodeableConcept.text", {
            let mut b = statement(&pid, None, "active");
            b["medicationCodeableConcept"]["text"] = "x".repeat(201).into();
            b
        }),
    ];
    for (element, body) in cases {
        let oo = outcome(
            call(
                app,
                "POST",
                "/fhir/R4/MedicationStatement",
                &ada,
                Some(&body),
            )
            .await,
            422,
        )
        .await;
        let named: Vec<&str> = oo["issue"]
            .as_array()
            .map(|i| {
                i.iter()
                    .filter_map(|x| x["expression"][0].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(named.contains(&element), "{element}: {oo}");
    }
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    outcome(
        call(
            app,
            "POST",
            "/fhir/R4/MedicationStatement",
            &bob,
            Some(&statement(&pid, None, "active")),
        )
        .await,
        403,
    )
    .await;
    let stranger = app.token(&app.org().await, Role::Admin);
    outcome(
        call(
            app,
            "POST",
            "/fhir/R4/MedicationStatement",
            &stranger,
            Some(&statement(&pid, None, "active")),
        )
        .await,
        404,
    )
    .await;
    let (all, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/MedicationStatement?patient={pid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(all["entry"].as_array().map(Vec::len), Some(2), "{all}");

    // A side effect.
    let effect = json!({
        "resourceType": "AdverseEvent",
        "actuality": "actual",
        "event": {"text": "Muscle ache"},
        "subject": {"reference": format!("Patient/{pid}")},
        "date": "2026-10-08",
        "severity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity", "code": "mild"}]},
    });
    let (reported, _) = json_of(
        call(app, "POST", "/fhir/R4/AdverseEvent", &ada, Some(&effect)).await,
        201,
    )
    .await;
    assert_eq!(reported["event"]["text"], "Muscle ache");
    let mut potential = effect.clone();
    potential["actuality"] = "potential".into();
    let mut unknown = effect.clone();
    unknown["severity"]["coding"][0]["code"] = "catastrophic".into();
    for (element, body) in [
        ("AdverseEvent.actuality", potential),
        ("AdverseEvent.severity", unknown),
    ] {
        let oo = outcome(
            call(app, "POST", "/fhir/R4/AdverseEvent", &ada, Some(&body)).await,
            422,
        )
        .await;
        assert_eq!(oo["issue"][0]["expression"][0], element, "{oo}");
    }
    outcome(
        call(app, "POST", "/fhir/R4/AdverseEvent", &bob, Some(&effect)).await,
        403,
    )
    .await;
    let (effects, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/AdverseEvent?patient={pid}"),
            &ada,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        effects["entry"].as_array().map(Vec::len),
        Some(1),
        "{effects}"
    );
}

on_both_backends!(
    medications_recorded_through_fhir_on,
    medications_recorded_through_fhir
);
