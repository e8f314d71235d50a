//! Medications and side effects over HTTP: recorded by the care team (and
//! side effects by patients themselves), bad dates refused with nothing
//! written, correlations per patient with counts, and across the
//! organization with small cells withheld.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, problem, send, spawn_app};

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(body)).await
}

fn medication(drug: &str, start: &str, stop: Option<&str>) -> Value {
    json!({"drug_name": drug, "dose": "10 mg", "schedule": "once daily",
           "started_on": start, "stopped_on": stop})
}

fn side_effect(symptom: &str, onset: &str) -> Value {
    json!({"symptom": symptom, "severity": "moderate", "onset_on": onset})
}

async fn one_patient(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let p = app.new_patient(&ada, "Medicated").await;
    let meds = format!("/api/v1/patients/{p}/medications");
    let effects = format!("/api/v1/patients/{p}/side-effects");

    let made = post(
        app,
        &ada,
        &meds,
        &medication("Lisinopril", "2026-11-01", None),
    )
    .await;
    assert_eq!(made.status(), 201);
    let backwards = post(
        app,
        &ada,
        &meds,
        &medication("Amoxicillin", "2026-11-20", Some("2026-11-01")),
    )
    .await;
    assert_eq!(
        problem(backwards, 422).await["errors"][0]["field"],
        "stopped_on"
    );
    let long = post(
        app,
        &ada,
        &meds,
        &medication(&"x".repeat(201), "2026-11-01", None),
    )
    .await;
    problem(long, 422).await;
    problem(
        post(app, &bob, &meds, &medication("Aspirin", "2026-11-01", None)).await,
        403,
    )
    .await;
    let viewer = app.token(&org, Role::Viewer);
    problem(
        post(
            app,
            &viewer,
            &meds,
            &medication("Aspirin", "2026-11-01", None),
        )
        .await,
        403,
    )
    .await;

    // The patient reports for themself; the clinician too.
    let link = send(
        app.http
            .put(app.url(&format!("/api/v1/patients/{p}/account")))
            .bearer_auth(&admin)
            .json(&json!({"subject": "patient-med"})),
    )
    .await;
    assert_eq!(link.status(), 204);
    let me = app.token_as(&org, Role::Patient, "patient-med");
    assert_eq!(
        post(app, &me, &effects, &side_effect("Dry cough", "2026-11-05"))
            .await
            .status(),
        201
    );
    assert_eq!(
        post(app, &ada, &effects, &side_effect("dry cough", "2026-11-09"))
            .await
            .status(),
        201
    );
    assert_eq!(
        post(app, &ada, &effects, &side_effect("Headache", "2026-10-20"))
            .await
            .status(),
        201
    );
    let future = post(app, &me, &effects, &side_effect("Rash", "2999-01-01")).await;
    assert_eq!(problem(future, 422).await["errors"][0]["field"], "onset_on");
    let unknown = post(
        app,
        &me,
        &effects,
        &json!({"symptom": "Rash", "severity": "awful", "onset_on": "2026-11-02"}),
    )
    .await;
    problem(unknown, 422).await;

    let history: Value = app.get(&meds, &ada).await.json().await.unwrap_or_default();
    assert_eq!(
        history["medications"].as_array().map(Vec::len),
        Some(1),
        "nothing else written"
    );
    assert_eq!(history["medications"][0]["drug_name"], "Lisinopril");
    assert_eq!(history["side_effects"].as_array().map(Vec::len), Some(3));
    problem(app.get(&meds, &bob).await, 403).await;

    let c: Value = app
        .get(
            &format!("/api/v1/patients/{p}/side-effect-correlations?window_days=14"),
            &me,
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        c,
        json!({"window_days": 14, "items": [{"drug": "lisinopril", "symptom": "dry cough", "count": 2}]})
    );
    let bad = app
        .get(
            &format!("/api/v1/patients/{p}/side-effect-correlations?window_days=400"),
            &ada,
        )
        .await;
    problem(bad, 422).await;
}
on_both_backends!(medications_and_side_effects_per_patient, one_patient);

async fn organization(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    for i in 0..14 {
        // Eleven with their sex recorded as female, three without.
        let mut body = crate::support::patient(&format!("Cohort {i}"));
        if i < 11 {
            body["sex"] = json!("female");
        }
        let created = app.create_patient(&ada, &body).await;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap_or_default();
        assert_eq!(
            created["sex"],
            if i < 11 { json!("female") } else { Value::Null }
        );
        let p = created["id"].as_str().unwrap_or_default().to_owned();
        let (drug, symptom) = if i < 11 {
            ("Lisinopril", "Cough")
        } else {
            ("Amoxicillin", "Rash")
        };
        let m = post(
            app,
            &ada,
            &format!("/api/v1/patients/{p}/medications"),
            &medication(drug, "2026-11-01", None),
        )
        .await;
        assert_eq!(m.status(), 201);
        let e = post(
            app,
            &ada,
            &format!("/api/v1/patients/{p}/side-effects"),
            &side_effect(symptom, "2026-11-03"),
        )
        .await;
        assert_eq!(e.status(), 201);
    }
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let res = app
        .get("/api/v1/analytics/side-effect-correlations", &compliance)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap_or_default();
    assert_eq!(
        body,
        json!({"window_days": 14, "items": [
            {"drug": "lisinopril", "symptom": "cough", "count": 11},
            // Three on amoxicillin with a rash: not even the pair is named.
            {"drug": "other", "symptom": "other", "count": null},
        ]})
    );
    let text = body.to_string();
    assert!(
        !text.contains("Cohort") && !text.contains("patient"),
        "no per-patient rows"
    );
    problem(
        app.get("/api/v1/analytics/side-effect-correlations", &ada)
            .await,
        403,
    )
    .await;
    // Research aggregates: counts only, small cells withheld.
    let research: Value = app
        .get("/api/v1/analytics/research", &compliance)
        .await
        .json()
        .await
        .unwrap_or_default();
    // Every test patient was born on 1980-02-03.
    let today = time::OffsetDateTime::now_utc().date();
    let age = today.year() - 1980 - i32::from((u8::from(today.month()), today.day()) < (2, 3));
    let band = match age {
        0..=17 => "0-17",
        18..=34 => "18-34",
        35..=49 => "35-49",
        50..=64 => "50-64",
        _ => "65+",
    };
    let bands: Vec<Value> = ["0-17", "18-34", "35-49", "50-64", "65+"]
        .iter()
        .map(|l| json!({"label": l, "count": if *l == band { json!(14) } else { Value::Null }}))
        .collect();
    assert_eq!(research["age_bands"], json!(bands));
    // Eleven female and three unknown: were the eleven shown, the three
    // would be the age band's fourteen minus eleven. So nothing is.
    assert_eq!(
        research["sexes"],
        json!([{"label": "female", "count": null}, {"label": "male", "count": null},
               {"label": "other", "count": null}, {"label": "unknown", "count": null}])
    );
    let mut odd = crate::support::patient("Odd");
    odd["sex"] = json!("sometimes");
    let refused = problem(app.create_patient(&ada, &odd).await, 422).await;
    assert_eq!(refused["errors"][0]["field"], "sex");
    assert_eq!(
        research["medications"],
        json!([{"label": "lisinopril", "count": 11}, {"label": "other", "count": null}])
    );
    assert_eq!(
        research["side_effects"],
        json!([{"label": "cough", "count": 11}, {"label": "other", "count": null}])
    );
    assert_eq!(research["appointments_per_month"], json!([]));
    let text = research.to_string();
    assert!(
        !text.contains("Cohort")
            && !text.contains("1980")
            && !text.contains("amoxicillin")
            && !text.contains("rash"),
        "nothing identifying, no rare label"
    );
    problem(app.get("/api/v1/analytics/research", &ada).await, 403).await;
    // Another organization sees only its own (nothing).
    let other = app.org().await;
    let theirs: Value = app
        .get(
            "/api/v1/analytics/side-effect-correlations",
            &app.token(&other, Role::Compliance),
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(theirs["items"], json!([]));
}
on_both_backends!(organization_correlations_withhold_small_cells, organization);
