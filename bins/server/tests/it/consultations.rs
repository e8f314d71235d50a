//! Consents and referrals over HTTP: a referral needs an active consent of
//! the patient; the receiving clinician reads exactly the consented
//! sections until the consent is withdrawn; across organizations only when
//! both allow it; every shared read is in both organizations' trails.

use carapace_auth::Role;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::on_both_backends;
use crate::support::{Backend, Org, TestApp, problem, send, spawn_app};

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(body)).await
}

async fn body(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    res.json().await.unwrap_or_else(|e| panic!("{e}"))
}

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + Duration::days(days))
        .format(&Rfc3339)
        .unwrap_or_default()
}

async fn link(app: &TestApp, admin: &str, patient: &str, subject: &str) {
    let res = send(
        app.http
            .put(app.url(&format!("/api/v1/patients/{patient}/account")))
            .bearer_auth(admin)
            .json(&json!({"subject": subject})),
    )
    .await;
    assert_eq!(res.status(), 204);
}

async fn settings(app: &TestApp, org: &Org, external: bool) {
    let res = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(app.token(org, Role::Admin))
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin",
                          "external_referrals": external})),
    )
    .await;
    assert_eq!(res.status(), 200);
}

/// The trail of `org`, as its compliance officer reads it.
async fn trail(app: &TestApp, org: &Org, action: &str) -> Vec<Value> {
    let compliance = app.token_as(org, Role::Compliance, "compliance-officer");
    let page = body(
        app.get(
            &format!("/api/v1/audit-events?limit=500&action={action}"),
            &compliance,
        )
        .await,
        200,
    )
    .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn same_org(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let cy = app.token_as(&org, Role::Clinician, "clinician-cy");
    let p = app.new_patient(&ada, "Shared").await;
    let q = app.new_patient(&ada, "Unshared").await;
    link(app, &admin, &p, "patient-shared").await;
    let me = app.token_as(&org, Role::Patient, "patient-shared");
    let meds = post(
        app,
        &ada,
        &format!("/api/v1/patients/{p}/medications"),
        &json!({"drug_name": "Metformin", "dose": "500 mg", "schedule": "twice daily", "started_on": "2026-10-01"}),
    )
    .await;
    assert_eq!(meds.status(), 201);

    // The patient consents to share medications with Bob for a week.
    let consents = format!("/api/v1/patients/{p}/consents");
    let bad = post(
        app,
        &me,
        &consents,
        &json!({"recipient": "clinician-bob", "sections": ["notes"], "expires_at": in_days(7)}),
    )
    .await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "sections");
    let past = post(app, &me, &consents, &json!({"recipient": "clinician-bob", "sections": ["medications"], "expires_at": in_days(-1)})).await;
    problem(past, 422).await;
    let consent = body(
        post(app, &me, &consents, &json!({"recipient": "clinician-bob", "sections": ["medications"], "expires_at": in_days(7)})).await,
        201,
    )
    .await;
    assert_eq!(consent["active"], true);
    let cid = consent["id"].as_str().unwrap_or_default().to_owned();

    // Sharing needs that consent, of that patient, by the care team.
    let none = post(
        app,
        &ada,
        "/api/v1/referrals",
        &json!({"patient_id": p, "consent_id": uuid::Uuid::new_v4()}),
    )
    .await;
    assert_eq!(problem(none, 422).await["errors"][0]["field"], "consent_id");
    let wrong = post(
        app,
        &ada,
        "/api/v1/referrals",
        &json!({"patient_id": q, "consent_id": cid}),
    )
    .await;
    problem(wrong, 422).await;
    let outsider = post(
        app,
        &cy,
        "/api/v1/referrals",
        &json!({"patient_id": p, "consent_id": cid}),
    )
    .await;
    problem(outsider, 403).await;
    let referral = body(
        post(
            app,
            &ada,
            "/api/v1/referrals",
            &json!({"patient_id": p, "consent_id": cid}),
        )
        .await,
        201,
    )
    .await;
    let rid = referral["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(referral["to"], "clinician-bob");

    // Bob reads exactly the medications; the referral is no care-team pass.
    let incoming = body(app.get("/api/v1/referrals", &bob).await, 200).await;
    assert_eq!(incoming.as_array().map(Vec::len), Some(1));
    let outgoing = body(
        app.get("/api/v1/referrals?direction=outgoing", &ada).await,
        200,
    )
    .await;
    assert_eq!(outgoing.as_array().map(Vec::len), Some(1));
    let record_path = format!("/api/v1/referrals/{rid}/record");
    let shared = body(app.get(&record_path, &bob).await, 200).await;
    assert_eq!(shared["sections"], json!(["medications"]));
    assert_eq!(
        shared["medications"]["medications"][0]["drug_name"],
        "Metformin"
    );
    assert!(shared.get("demographics").is_none() && shared.get("appointments").is_none());
    problem(app.get(&format!("/api/v1/patients/{p}"), &bob).await, 403).await;
    problem(app.get(&record_path, &cy).await, 404).await;

    // The patient withdraws it: Bob's access stops at once.
    let revoked = post(app, &me, &format!("{consents}/{cid}/revoke"), &json!({})).await;
    assert_eq!(revoked.status(), 204);
    let stopped = problem(app.get(&record_path, &bob).await, 403).await;
    assert_eq!(stopped["code"], "consent_inactive");
    let listed = body(app.get(&consents, &me).await, 200).await;
    assert_eq!(listed[0]["active"], false);
    let again = post(
        app,
        &ada,
        "/api/v1/referrals",
        &json!({"patient_id": p, "consent_id": cid}),
    )
    .await;
    problem(again, 422).await;
    let reads = trail(app, &org, "referral.shared_read").await;
    let outcomes: Vec<&str> = reads.iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert!(
        outcomes.contains(&"allowed") && outcomes.contains(&"denied"),
        "{outcomes:?}"
    );
    assert!(
        reads
            .iter()
            .all(|e| e["actor"] == "clinician-bob" || e["actor"] == "clinician-cy")
    );
}
on_both_backends!(referrals_share_exactly_what_the_consent_allows, same_org);

async fn across_orgs(app: &TestApp) {
    let a = app.org().await;
    let b = app.org().await;
    let ada = app.token_as(&a, Role::Clinician, "clinician-ada");
    let zed = app.token_as(&b, Role::Clinician, "clinician-zed");
    let p = app.new_patient(&ada, "Travelling").await;
    // Another organization cannot record consent for A's patient.
    let foreign = post(
        app,
        &app.token(&b, Role::Admin),
        &format!("/api/v1/patients/{p}/consents"),
        &json!({"recipient": "clinician-zed", "sections": ["demographics"], "expires_at": in_days(3)}),
    )
    .await;
    problem(foreign, 404).await;
    let unknown_org = post(
        app,
        &ada,
        &format!("/api/v1/patients/{p}/consents"),
        &json!({"recipient": "clinician-zed", "recipient_org": "no-such-org", "sections": ["demographics"], "expires_at": in_days(3)}),
    )
    .await;
    assert_eq!(
        problem(unknown_org, 422).await["errors"][0]["field"],
        "recipient_org"
    );
    let consent = body(
        post(
            app,
            &ada,
            &format!("/api/v1/patients/{p}/consents"),
            &json!({"recipient": "clinician-zed", "recipient_org": b.slug, "sections": ["demographics", "appointments"], "expires_at": in_days(3)}),
        )
        .await,
        201,
    )
    .await;
    let refer = json!({"patient_id": p, "consent_id": consent["id"]});
    let off = post(app, &ada, "/api/v1/referrals", &refer).await;
    assert_eq!(problem(off, 403).await["code"], "external_referrals_off");
    settings(app, &a, true).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    problem(post(app, &ada, "/api/v1/referrals", &refer).await, 403).await;
    settings(app, &b, true).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let referral = body(post(app, &ada, "/api/v1/referrals", &refer).await, 201).await;
    let rid = referral["id"].as_str().unwrap_or_default().to_owned();

    let incoming = body(app.get("/api/v1/referrals", &zed).await, 200).await;
    assert_eq!(incoming[0]["id"], rid.as_str());
    let shared = body(
        app.get(&format!("/api/v1/referrals/{rid}/record"), &zed)
            .await,
        200,
    )
    .await;
    assert_eq!(shared["demographics"]["given_name"], "Travelling");
    assert_eq!(shared["appointments"], json!([]));
    assert!(shared.get("medications").is_none());
    // Both organizations' trails hold the read, by Zed.
    for org in [&a, &b] {
        let reads = trail(app, org, "referral.shared_read").await;
        assert!(
            reads
                .iter()
                .any(|e| e["actor"] == "clinician-zed" && e["outcome"] == "allowed"),
            "{reads:?}"
        );
    }
    let at_source = trail(app, &a, "patient.read").await;
    assert!(at_source.iter().any(|e| e["actor"] == "clinician-zed"));
    // B turns external referrals off: the shared record closes.
    settings(app, &b, false).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let closed = problem(
        app.get(&format!("/api/v1/referrals/{rid}/record"), &zed)
            .await,
        403,
    )
    .await;
    assert_eq!(closed["code"], "external_referrals_off");
}
on_both_backends!(
    referrals_cross_organizations_only_when_both_allow,
    across_orgs
);
