//! Consents and referrals as `Consent` and `ServiceRequest`: only whoever
//! may manage a patient's consents reads them, only the two clinicians of
//! a referral see it, across organizations too, each read in the trail.

use carapace_auth::Role;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, Org, TestApp, send, spawn_app};

async fn rest(app: &TestApp, method: &str, token: &str, path: &str, body: &Value) -> Value {
    let res = send(
        app.http
            .request(
                method.parse().unwrap_or_else(|e| panic!("{e}")),
                app.url(path),
            )
            .bearer_auth(token)
            .json(body),
    )
    .await;
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

async fn allow_external(app: &TestApp, org: &Org) {
    rest(
        app,
        "PUT",
        &app.token(org, Role::Admin),
        "/api/v1/organization/settings",
        &json!({"clinician_scope": "care_team", "phi_mfa": "admin", "external_referrals": true}),
    )
    .await;
}

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + Duration::days(days))
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The ids of a searchset's resources.
fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn get(app: &TestApp, path: &str, token: &str, status: u16) -> Value {
    json_of(call(app, "GET", path, token, None).await, status)
        .await
        .0
}

async fn consents_and_referrals(app: &TestApp) {
    let (org, other) = (app.org().await, app.org().await);
    for o in [&org, &other] {
        allow_external(app, o).await;
    }
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let cy = app.token_as(&org, Role::Clinician, "clinician-cy");
    let dee = app.token_as(&other, Role::Clinician, "clinician-dee");
    let stranger = app.token_as(&other, Role::Admin, "admin-elsewhere");
    let p = app.new_patient(&ada, "Consenting").await;
    rest(
        app,
        "PUT",
        &admin,
        &format!("/api/v1/patients/{p}/account"),
        &json!({"subject": "patient-consenting"}),
    )
    .await;
    let me = app.token_as(&org, Role::Patient, "patient-consenting");
    let consents = format!("/api/v1/patients/{p}/consents");
    let to_bob = rest(app, "POST", &me, &consents, &json!({"recipient": "clinician-bob", "sections": ["medications"], "expires_at": in_days(7)})).await;
    let to_dee = rest(app, "POST", &ada, &consents, &json!({"recipient": "clinician-dee", "recipient_org": other.slug, "sections": ["demographics", "appointments"], "expires_at": in_days(3)})).await;
    let (bob_consent, dee_consent) = (
        to_bob["id"].as_str().unwrap_or_default().to_owned(),
        to_dee["id"].as_str().unwrap_or_default().to_owned(),
    );

    // The patient and their care team read the consents; no one else.
    let search = format!("/fhir/R4/Consent?patient=Patient/{p}");
    let found = get(app, &search, &ada, 200).await;
    let mut expected = vec![bob_consent.clone(), dee_consent.clone()];
    expected.sort();
    let mut got = ids(&found);
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(ids(&get(app, &search, &me, 200).await).len(), 2);
    let c = get(app, &format!("/fhir/R4/Consent/{bob_consent}"), &ada, 200).await;
    assert_eq!(c["status"], "active");
    assert_eq!(c["patient"]["reference"], format!("Patient/{p}"));
    assert_eq!(c["provision"]["type"], "permit");
    assert_eq!(
        c["provision"]["actor"][0]["reference"]["identifier"]["value"],
        "clinician-bob"
    );
    assert_eq!(
        c["provision"]["code"][0]["coding"][0]["code"],
        "medications"
    );
    assert_eq!(c["provision"]["class"][0]["code"], "MedicationStatement");
    let d = get(app, &format!("/fhir/R4/Consent/{dee_consent}"), &me, 200).await;
    assert_eq!(
        d["provision"]["actor"][0]["reference"]["identifier"]["assigner"]["identifier"]["value"],
        other.id.to_string()
    );
    outcome(call(app, "GET", &search, &cy, None).await, 403).await;
    let res = call(
        app,
        "GET",
        &format!("/fhir/R4/Consent/{bob_consent}"),
        &cy,
        None,
    )
    .await;
    outcome(res, 403).await;
    // Another organization's clinician, even the consent's recipient, and
    // its administrator: no such consent there.
    for token in [&dee, &stranger] {
        let res = call(
            app,
            "GET",
            &format!("/fhir/R4/Consent/{dee_consent}"),
            token,
            None,
        )
        .await;
        outcome(res, 404).await;
        outcome(call(app, "GET", &search, token, None).await, 404).await;
    }
    let res = call(
        app,
        "GET",
        &format!("/fhir/R4/Consent/{}", uuid::Uuid::new_v4()),
        &ada,
        None,
    )
    .await;
    outcome(res, 404).await;
    let res = call(
        app,
        "GET",
        &format!("/fhir/R4/Consent?patient=Patient/{p}&status=active"),
        &ada,
        None,
    )
    .await;
    let refused = outcome(res, 422).await;
    assert_eq!(refused["issue"][0]["expression"][0], "status");
    outcome(call(app, "GET", "/fhir/R4/Consent", &ada, None).await, 422).await;

    // A read is in the patient's trail, under the request's id.
    let res = call(
        app,
        "GET",
        &format!("/fhir/R4/Consent/{bob_consent}"),
        &me,
        None,
    )
    .await;
    let request = header(res.headers(), "x-request-id");
    json_of(res, 200).await;
    assert_eq!(
        events_of(app, &org, &request).await,
        vec![("consent.read".to_owned(), "allowed".to_owned())]
    );

    // Referrals: the referring and the receiving clinician see each one.
    let to_bob_ref = rest(
        app,
        "POST",
        &ada,
        "/api/v1/referrals",
        &json!({"patient_id": p, "consent_id": bob_consent}),
    )
    .await;
    let to_dee_ref = rest(
        app,
        "POST",
        &ada,
        "/api/v1/referrals",
        &json!({"patient_id": p, "consent_id": dee_consent}),
    )
    .await;
    let (rb, rd) = (
        to_bob_ref["id"].as_str().unwrap_or_default().to_owned(),
        to_dee_ref["id"].as_str().unwrap_or_default().to_owned(),
    );
    let mine = get(app, "/fhir/R4/ServiceRequest", &ada, 200).await;
    let mut made = ids(&mine);
    made.sort();
    let mut both = vec![rb.clone(), rd.clone()];
    both.sort();
    assert_eq!(made, both);
    let as_requester =
        "/fhir/R4/ServiceRequest?requester:identifier=urn:carapace:subject|clinician-ada";
    assert_eq!(ids(&get(app, as_requester, &ada, 200).await).len(), 2);
    let as_performer =
        "/fhir/R4/ServiceRequest?performer:identifier=urn:carapace:subject|clinician-ada";
    assert!(ids(&get(app, as_performer, &ada, 200).await).is_empty());
    // Asking for someone else's referrals finds none of them.
    let bobs = "/fhir/R4/ServiceRequest?performer:identifier=clinician-bob";
    assert!(ids(&get(app, bobs, &ada, 200).await).is_empty());
    assert!(ids(&get(app, bobs, &cy, 200).await).is_empty());
    assert_eq!(ids(&get(app, bobs, &bob, 200).await), vec![rb.clone()]);
    let res = call(app, "GET", "/fhir/R4/ServiceRequest?patient=x", &ada, None).await;
    outcome(res, 422).await;

    let at_bob = get(app, &format!("/fhir/R4/ServiceRequest/{rb}"), &bob, 200).await;
    assert_eq!(at_bob["subject"]["reference"], format!("Patient/{p}"));
    assert_eq!(at_bob["requester"]["identifier"]["value"], "clinician-ada");
    assert_eq!(
        at_bob["performer"][0]["identifier"]["value"],
        "clinician-bob"
    );
    assert_eq!(
        at_bob["supportingInfo"][0]["reference"],
        format!("Consent/{bob_consent}")
    );
    // Across organizations the patient is named, not linked: there it is
    // no resource.
    let at_dee = get(app, &format!("/fhir/R4/ServiceRequest/{rd}"), &dee, 200).await;
    assert_eq!(at_dee["subject"]["identifier"]["value"], p.as_str());
    assert!(at_dee["subject"]["reference"].is_null());
    assert_eq!(
        ids(&get(app, "/fhir/R4/ServiceRequest", &dee, 200).await),
        vec![rd.clone()]
    );
    // No one else reads them: not a colleague, not another organization.
    let eve = app.token_as(&other, Role::Clinician, "clinician-eve");
    for (token, id) in [(&cy, &rb), (&bob, &rd), (&eve, &rd), (&dee, &rb)] {
        let res = call(
            app,
            "GET",
            &format!("/fhir/R4/ServiceRequest/{id}"),
            token,
            None,
        )
        .await;
        outcome(res, 404).await;
    }
    assert!(ids(&get(app, "/fhir/R4/ServiceRequest", &cy, 200).await).is_empty());
    // The patient made and received none (their record's referrals are
    // their clinicians'); a compliance officer may not look at all.
    assert!(ids(&get(app, "/fhir/R4/ServiceRequest", &me, 200).await).is_empty());
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    outcome(
        call(app, "GET", "/fhir/R4/ServiceRequest", &compliance, None).await,
        403,
    )
    .await;

    // A withdrawn consent reads as inactive, ending when it was withdrawn.
    send(
        app.http
            .post(app.url(&format!("{consents}/{bob_consent}/revoke")))
            .bearer_auth(&me),
    )
    .await;
    let gone = get(app, &format!("/fhir/R4/Consent/{bob_consent}"), &ada, 200).await;
    assert_eq!(gone["status"], "inactive");
    assert!(gone["provision"]["period"]["end"].as_str() < c["provision"]["period"]["end"].as_str());
}

on_both_backends!(consents_and_referrals_on, consents_and_referrals);

fn fhir_consent(
    patient: &str,
    recipient: &str,
    org: Option<String>,
    sections: &[&str],
    end: &str,
) -> Value {
    let mut identifier = json!({"system": "urn:carapace:subject", "value": recipient});
    if let Some(org) = org {
        identifier["assigner"] =
            json!({"identifier": {"system": "urn:carapace:organization", "value": org}});
    }
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"end": end},
            "actor": [{"reference": {"identifier": identifier}}],
            "code": sections.iter().map(|s| json!({"coding": [{"system": "urn:carapace:consent-section", "code": s}]})).collect::<Vec<_>>(),
        },
    })
}

/// The issues' elements of an OperationOutcome.
fn elements(oo: &Value) -> Vec<String> {
    oo["issue"]
        .as_array()
        .map(|i| {
            i.iter()
                .filter_map(|x| x["expression"][0].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Consents recorded and withdrawn, and referrals made, through FHIR: the
/// REST use cases' decisions, every refusal naming its element.
async fn consents_and_referrals_written(app: &TestApp) {
    let (org, other) = (app.org().await, app.org().await);
    for o in [&org, &other] {
        allow_external(app, o).await;
    }
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let cy = app.token_as(&org, Role::Clinician, "clinician-cy");
    let p = app.new_patient(&ada, "Written").await;
    let week = in_days(7);

    let res = call(
        app,
        "POST",
        "/fhir/R4/Consent",
        &ada,
        Some(&fhir_consent(
            &p,
            "clinician-bob",
            None,
            &["medications"],
            &week,
        )),
    )
    .await;
    let (made, h) = json_of(res, 201).await;
    let cid = made["id"].as_str().unwrap_or_default().to_owned();
    assert!(header(&h, "location").ends_with(&format!("/fhir/R4/Consent/{cid}")));
    assert_eq!(made["status"], "active");
    assert_eq!(
        get(app, &format!("/fhir/R4/Consent/{cid}"), &ada, 200).await,
        made
    );
    let body = fhir_consent(
        &p,
        "clinician-dee",
        Some(other.id.to_string()),
        &["demographics"],
        &week,
    );
    let (across, _) = json_of(
        call(app, "POST", "/fhir/R4/Consent", &ada, Some(&body)).await,
        201,
    )
    .await;
    assert_eq!(
        across["provision"]["actor"][0]["reference"]["identifier"]["assigner"]["identifier"]["value"],
        other.id.to_string()
    );

    // Refused, naming the element; nothing recorded.
    let mut wrong_scope = fhir_consent(&p, "clinician-bob", None, &["medications"], &week);
    wrong_scope["scope"]["coding"][0]["code"] = "research".into();
    let mut extra = fhir_consent(&p, "clinician-bob", None, &["medications"], &week);
    extra["verification"] = json!([{"verified": true}]);
    let cases = [
        ("Consent.scope", wrong_scope),
        ("Consent.verification", extra),
        (
            "Consent.provision.code",
            fhir_consent(&p, "clinician-bob", None, &["notes"], &week),
        ),
        (
            "Consent.provision.period.end",
            fhir_consent(&p, "clinician-bob", None, &["medications"], &in_days(400)),
        ),
        (
            "Consent.provision.actor[0].reference.identifier",
            fhir_consent(
                &p,
                "clinician-bob",
                Some(uuid::Uuid::new_v4().to_string()),
                &["medications"],
                &week,
            ),
        ),
        (
            "Consent.patient",
            fhir_consent("x", "clinician-bob", None, &["medications"], &week),
        ),
    ];
    for (element, body) in cases {
        let oo = outcome(
            call(app, "POST", "/fhir/R4/Consent", &ada, Some(&body)).await,
            422,
        )
        .await;
        assert!(
            elements(&oo).iter().any(|e| e == element),
            "{element}: {oo}"
        );
    }
    let body = fhir_consent(&p, "clinician-bob", None, &["medications"], &week);
    outcome(
        call(app, "POST", "/fhir/R4/Consent", &cy, Some(&body)).await,
        403,
    )
    .await;
    let stranger = app.token_as(&other, Role::Clinician, "clinician-dee");
    outcome(
        call(app, "POST", "/fhir/R4/Consent", &stranger, Some(&body)).await,
        404,
    )
    .await;
    let listed = get(
        app,
        &format!("/fhir/R4/Consent?patient=Patient/{p}"),
        &ada,
        200,
    )
    .await;
    assert_eq!(ids(&listed).len(), 2);

    // A referral under the consent.
    let referral = json!({
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "subject": {"reference": format!("Patient/{p}")},
        "supportingInfo": [{"reference": format!("Consent/{cid}")}],
    });
    let (sent, _) = json_of(
        call(
            app,
            "POST",
            "/fhir/R4/ServiceRequest",
            &ada,
            Some(&referral),
        )
        .await,
        201,
    )
    .await;
    let rid = sent["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(sent["performer"][0]["identifier"]["value"], "clinician-bob");
    assert_eq!(
        get(app, &format!("/fhir/R4/ServiceRequest/{rid}"), &bob, 200).await["id"],
        rid.as_str()
    );
    outcome(
        call(app, "POST", "/fhir/R4/ServiceRequest", &cy, Some(&referral)).await,
        403,
    )
    .await;
    let mut named = referral.clone();
    named["requester"] =
        json!({"identifier": {"system": "urn:carapace:subject", "value": "clinician-cy"}});
    let oo = outcome(
        call(app, "POST", "/fhir/R4/ServiceRequest", &ada, Some(&named)).await,
        422,
    )
    .await;
    assert_eq!(elements(&oo), vec!["ServiceRequest.requester"]);
    let mut unknown = referral.clone();
    unknown["supportingInfo"][0]["reference"] = format!("Consent/{}", uuid::Uuid::new_v4()).into();
    let oo = outcome(
        call(app, "POST", "/fhir/R4/ServiceRequest", &ada, Some(&unknown)).await,
        422,
    )
    .await;
    assert_eq!(elements(&oo), vec!["ServiceRequest.supportingInfo[0]"]);

    // Withdrawn by its status: the shared record closes; nothing else of
    // a consent changes.
    let url = format!("/fhir/R4/Consent/{cid}");
    let mut widened = made.clone();
    widened["provision"]["code"][0]["coding"][0]["code"] = "demographics".into();
    let oo = outcome(call(app, "PUT", &url, &ada, Some(&widened)).await, 422).await;
    assert_eq!(elements(&oo), vec!["Consent"]);
    let mut withdrawn = made.clone();
    withdrawn["status"] = "inactive".into();
    outcome(call(app, "PUT", &url, &cy, Some(&withdrawn)).await, 403).await;
    let (gone, _) = json_of(call(app, "PUT", &url, &ada, Some(&withdrawn)).await, 200).await;
    assert_eq!(gone["status"], "inactive");
    assert_eq!(get(app, &url, &ada, 200).await["status"], "inactive");
    let shared = app
        .get(&format!("/api/v1/referrals/{rid}/record"), &bob)
        .await;
    assert_eq!(shared.status(), 403);
    let mut revived = gone.clone();
    revived["status"] = "active".into();
    let oo = outcome(call(app, "PUT", &url, &ada, Some(&revived)).await, 422).await;
    assert_eq!(elements(&oo), vec!["Consent.status"]);
    // Withdrawing again changes nothing.
    json_of(call(app, "PUT", &url, &ada, Some(&gone)).await, 200).await;
}

on_both_backends!(
    consents_and_referrals_written_on,
    consents_and_referrals_written
);
