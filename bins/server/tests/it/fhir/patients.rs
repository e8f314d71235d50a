//! Patients: the lifecycle, bad input as OperationOutcome, other organizations.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, send, spawn_app};

async fn patient_lifecycle(app: &TestApp) {
    let org = app.org().await;
    let clinician = app.token(&org, Role::Clinician);
    let res = call(
        app,
        "POST",
        "/fhir/R4/Patient",
        &clinician,
        Some(&jane("Jane")),
    )
    .await;
    let (created, h) = json_of(res, 201).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let v1 = created["meta"]["versionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!v1.is_empty() && created["meta"]["lastUpdated"].is_string());
    assert_eq!(
        header(&h, "location"),
        app.url(&format!("/fhir/R4/Patient/{id}/_history/{v1}"))
    );
    assert_eq!(header(&h, "etag"), format!("W/\"{v1}\""));
    assert_eq!(created["name"][0]["given"][0], "Jane");
    assert_eq!(created["identifier"][0]["value"], "M-Jane");

    // A FHIR read is the REST read: the same record, the same audit event.
    let res = call(
        app,
        "GET",
        &format!("/fhir/R4/Patient/{id}"),
        &clinician,
        None,
    )
    .await;
    let fhir_request = header(res.headers(), "x-request-id");
    let (read, h) = json_of(res, 200).await;
    assert_eq!(read, created);
    assert_eq!(header(&h, "etag"), format!("W/\"{v1}\""));
    let rest = app.get(&format!("/api/v1/patients/{id}"), &clinician).await;
    let rest_request = header(rest.headers(), "x-request-id");
    assert_eq!(rest.status(), 200);
    let fhir_events = events_of(app, &org, &fhir_request).await;
    assert_eq!(
        fhir_events,
        vec![("patient.read".to_owned(), "allowed".to_owned())]
    );
    assert_eq!(fhir_events, events_of(app, &org, &rest_request).await);

    // Versioned update: the current version wins once; a stale one is 412
    // and changes nothing.
    let mut changed = read.clone();
    changed["name"][0]["family"] = json!("Doe");
    let stale_match = format!("W/\"{v1}\"");
    let res = send(
        app.http
            .put(app.url(&format!("/fhir/R4/Patient/{id}")))
            .bearer_auth(&clinician)
            .header("content-type", FHIR)
            .header("if-match", &stale_match)
            .body(changed.to_string()),
    )
    .await;
    let (updated, h) = json_of(res, 200).await;
    let v2 = updated["meta"]["versionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(v2, v1);
    assert_eq!(header(&h, "etag"), format!("W/\"{v2}\""));
    assert_eq!(updated["name"][0]["family"], "Doe");
    let mut again = changed.clone();
    again["name"][0]["family"] = json!("Stale");
    let res = send(
        app.http
            .put(app.url(&format!("/fhir/R4/Patient/{id}")))
            .bearer_auth(&clinician)
            .header("content-type", FHIR)
            .header("if-match", &stale_match)
            .body(again.to_string()),
    )
    .await;
    let oo = outcome(res, 412).await;
    assert_eq!(oo["issue"][0]["code"], "conflict");
    let (now, _) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Patient/{id}"),
            &clinician,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(now["name"][0]["family"], "Doe");
    // Two updates racing on one version: exactly one lands.
    let race = |family: &'static str| {
        let mut body = now.clone();
        body["name"][0]["family"] = json!(family);
        send(
            app.http
                .put(app.url(&format!("/fhir/R4/Patient/{id}")))
                .bearer_auth(&clinician)
                .header("content-type", FHIR)
                .header("if-match", format!("W/\"{v2}\""))
                .body(body.to_string()),
        )
    };
    let (a, b) = tokio::join!(race("Alpha"), race("Beta"));
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 412]);
    // A PUT replaces: what the body leaves out is cleared.
    let (cur, h) = json_of(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Patient/{id}"),
            &clinician,
            None,
        )
        .await,
        200,
    )
    .await;
    let mut bare = cur.clone();
    bare.as_object_mut().map(|o| o.remove("telecom"));
    let res = send(
        app.http
            .put(app.url(&format!("/fhir/R4/Patient/{id}")))
            .bearer_auth(&clinician)
            .header("content-type", FHIR)
            .header("if-match", header(&h, "etag"))
            .body(bare.to_string()),
    )
    .await;
    let (replaced, _) = json_of(res, 200).await;
    assert!(replaced.get("telecom").is_none(), "{replaced}");
    let rest: Value = app
        .get(&format!("/api/v1/patients/{id}"), &clinician)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rest["phone"], Value::Null);

    // Searches, page by page, through absolute next links.
    for given in ["Ann", "Bea", "Cai"] {
        let res = call(
            app,
            "POST",
            "/fhir/R4/Patient",
            &clinician,
            Some(&jane(given)),
        )
        .await;
        assert_eq!(res.status(), 201);
    }
    let pages = all_pages(app, "/fhir/R4/Patient?_count=2", &clinician).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
    let pages = all_pages(
        app,
        "/fhir/R4/Patient?family=Roe&birthdate=1980-02-03&_count=1",
        &clinician,
    )
    .await;
    assert_eq!(
        pages.concat().len(),
        3,
        "Roe, not the Doe/Alpha/Beta one: {pages:?}"
    );
    let by_member = all_pages(
        app,
        "/fhir/R4/Patient?identifier=urn:carapace:member-id%7CM-Bea",
        &clinician,
    )
    .await;
    assert_eq!(by_member.concat().len(), 1);
    let other_system = all_pages(
        app,
        "/fhir/R4/Patient?identifier=urn:other%7CM-Bea",
        &clinician,
    )
    .await;
    assert!(other_system.concat().is_empty());
    let by_id = all_pages(app, &format!("/fhir/R4/Patient?_id={id}"), &clinician).await;
    assert_eq!(by_id.concat(), vec![id.clone()]);
    let future = all_pages(
        app,
        "/fhir/R4/Patient?_lastUpdated=gt2999-01-01T00:00:00Z",
        &clinician,
    )
    .await;
    assert!(future.concat().is_empty());
    let past = all_pages(
        app,
        "/fhir/R4/Patient?_lastUpdated=ge2000-01-01T00:00:00Z&_format=json",
        &clinician,
    )
    .await;
    assert_eq!(past.concat().len(), 4);
    // A whole day works too, and a day with nothing changed in it matches none.
    let days = all_pages(
        app,
        "/fhir/R4/Patient?_lastUpdated=gt2000-01-01&_lastUpdated=lt2999-01-01",
        &clinician,
    )
    .await;
    assert_eq!(days.concat().len(), 4);
    let that_day = all_pages(app, "/fhir/R4/Patient?_lastUpdated=2000-01-01", &clinician).await;
    assert!(that_day.concat().is_empty());

    // Delete: admins (MFA) only, as on REST; then it is gone.
    outcome(
        call(
            app,
            "DELETE",
            &format!("/fhir/R4/Patient/{id}"),
            &clinician,
            None,
        )
        .await,
        403,
    )
    .await;
    let admin = app.token(&org, Role::Admin);
    let res = call(
        app,
        "DELETE",
        &format!("/fhir/R4/Patient/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    let oo = outcome(
        call(
            app,
            "GET",
            &format!("/fhir/R4/Patient/{id}"),
            &clinician,
            None,
        )
        .await,
        404,
    )
    .await;
    assert_eq!(oo["issue"][0]["code"], "not-found");
}

on_both_backends!(patient_lifecycle_on, patient_lifecycle);

async fn bad_requests_are_operation_outcomes(app: &TestApp) {
    let org = app.org().await;
    let clinician = app.token(&org, Role::Clinician);
    // The capability statement is public; the data is not.
    let res = send(app.http.get(app.url("/fhir/R4/metadata"))).await;
    let (cap, _) = json_of(res, 200).await;
    assert_eq!(cap["resourceType"], "CapabilityStatement");
    assert_eq!(cap["fhirVersion"], "4.0.1");
    let res = send(app.http.get(app.url("/fhir/R4/Patient"))).await;
    assert!(res.headers().contains_key("www-authenticate"));
    let oo = outcome(res, 401).await;
    assert_eq!(oo["issue"][0]["code"], "login");
    let oo = outcome(
        call(app, "GET", "/fhir/R4/Patient", "not-a-token", None).await,
        401,
    )
    .await;
    assert_eq!(oo["issue"][0]["code"], "login");

    let post = |body: String, ct: &'static str| {
        send(
            app.http
                .post(app.url("/fhir/R4/Patient"))
                .bearer_auth(&clinician)
                .header("content-type", ct)
                .body(body),
        )
    };
    outcome(post("{\"resourceType\":".into(), FHIR).await, 400).await;
    outcome(post(jane("X").to_string(), "text/plain").await, 415).await;
    let element = |mut body: Value, edit: fn(&mut Value)| {
        edit(&mut body);
        body.to_string()
    };
    let edits: [(Edit, &str); 11] = [
        (|b| b["foo"] = json!(1), "Patient.foo"),
        (
            |b| b["birthDate"] = json!("1990-13-45"),
            "Patient.birthDate",
        ),
        (
            |b| b["birthDate"] = json!("2999-01-01"),
            "Patient.birthDate",
        ),
        (|b| b["gender"] = json!("woman"), "Patient.gender"),
        (
            |b| b["resourceType"] = json!("Observation"),
            "Patient.resourceType",
        ),
        (
            |b| b["name"][0]["family"] = json!(7),
            "Patient.name[0].family",
        ),
        (
            |b| b["name"][0]["family"] = json!("x".repeat(101)),
            "Patient.name[0].family",
        ),
        (
            |b| b["telecom"][1]["value"] = json!("not-an-email"),
            "Patient.telecom[1].value",
        ),
        (
            |b| b["identifier"][0]["system"] = json!("urn:ssn"),
            "Patient.identifier[0].system",
        ),
        (
            |b| b["address"] = json!([{"city": "Springfield"}]),
            "Patient.address",
        ),
        (
            |b| {
                b.as_object_mut().map(|o| o.remove("name"));
            },
            "Patient.name",
        ),
    ];
    for (edit, path) in edits {
        let oo = outcome(post(element(jane("Y"), edit), FHIR).await, 422).await;
        let named: Vec<&str> = oo["issue"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["expression"][0].as_str())
            .collect();
        assert!(named.contains(&path), "{path}: {oo}");
    }
    // Nothing of the refused bodies was kept.
    let (bundle, _) = json_of(
        call(app, "GET", "/fhir/R4/Patient", &clinician, None).await,
        200,
    )
    .await;
    assert!(bundle.get("entry").is_none(), "{bundle}");

    // Ids and paths an attacker tries: nothing there, never a 5xx.
    for path in [
        "/fhir/R4/Patient/not-a-uuid",
        "/fhir/R4/Patient/%2e%2e",
        "/fhir/R4/Patient/..%2Fmetadata",
        "/fhir/R4/Observation/1",
        "/fhir/R4/Patient/00000000-0000-0000-0000-000000000000",
    ] {
        outcome(call(app, "GET", path, &clinician, None).await, 404).await;
    }
    for query in [
        "_lastUpdated=I%C2%8E%C3%93",
        "unknown=1",
        "family=Roe",
        "_count=0",
        "_count=abc",
        "_lastUpdated=2020",
        "_cursor=forged",
        "_id=a&_id=b",
    ] {
        let res = call(
            app,
            "GET",
            &format!("/fhir/R4/Patient?{query}"),
            &clinician,
            None,
        )
        .await;
        assert!(
            matches!(res.status().as_u16(), 400 | 422),
            "{query}: {}",
            res.status()
        );
        outcome(res, res_status(query)).await;
    }
    outcome(
        call(app, "GET", "/fhir/R4/Patient?_format=xml", &clinician, None).await,
        422,
    )
    .await;
    // An update naming another id in its body changes nothing.
    let (p, _) = json_of(
        call(
            app,
            "POST",
            "/fhir/R4/Patient",
            &clinician,
            Some(&jane("Zed")),
        )
        .await,
        201,
    )
    .await;
    let id = p["id"].as_str().unwrap_or_default();
    let mut other = p.clone();
    other["id"] = json!(uuid::Uuid::now_v7().to_string());
    let oo = outcome(
        call(
            app,
            "PUT",
            &format!("/fhir/R4/Patient/{id}"),
            &clinician,
            Some(&other),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.id");
    let res = send(
        app.http
            .put(app.url(&format!("/fhir/R4/Patient/{id}")))
            .bearer_auth(&clinician)
            .header("content-type", FHIR)
            .header("if-match", "W/\"not-a-version\"")
            .body(p.to_string()),
    )
    .await;
    outcome(res, 412).await;
}

fn res_status(query: &str) -> u16 {
    match query {
        "_cursor=forged" => 400,
        _ => 422,
    }
}

on_both_backends!(
    bad_requests_are_operation_outcomes_on,
    bad_requests_are_operation_outcomes
);

async fn other_organizations_see_nothing(app: &TestApp) {
    let a = app.org().await;
    let b = app.org().await;
    let in_a = app.token(&a, Role::Admin);
    let in_b = app.token(&b, Role::Admin);
    let (p, _) = json_of(
        call(app, "POST", "/fhir/R4/Patient", &in_a, Some(&jane("Ava"))).await,
        201,
    )
    .await;
    let id = p["id"].as_str().unwrap_or_default();
    outcome(
        call(app, "GET", &format!("/fhir/R4/Patient/{id}"), &in_b, None).await,
        404,
    )
    .await;
    outcome(
        call(
            app,
            "PUT",
            &format!("/fhir/R4/Patient/{id}"),
            &in_b,
            Some(&p),
        )
        .await,
        404,
    )
    .await;
    outcome(
        call(
            app,
            "DELETE",
            &format!("/fhir/R4/Patient/{id}"),
            &in_b,
            None,
        )
        .await,
        404,
    )
    .await;
    for search in [
        format!("/fhir/R4/Patient?_id={id}"),
        "/fhir/R4/Patient?identifier=M-Ava".to_owned(),
        "/fhir/R4/Patient?family=Roe&birthdate=1980-02-03".to_owned(),
        "/fhir/R4/Patient".to_owned(),
    ] {
        assert!(
            all_pages(app, &search, &in_b).await.concat().is_empty(),
            "{search}"
        );
    }
    // A next link of A's search is no cursor in B.
    let (p2, _) = json_of(
        call(app, "POST", "/fhir/R4/Patient", &in_a, Some(&jane("Bo"))).await,
        201,
    )
    .await;
    assert!(p2["id"].is_string());
    let (bundle, _) = json_of(
        call(app, "GET", "/fhir/R4/Patient?_count=1", &in_a, None).await,
        200,
    )
    .await;
    let next = bundle["link"][1]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!next.is_empty());
    outcome(call(app, "GET", &next, &in_b, None).await, 400).await;
    // A's patient is untouched.
    let (still, _) = json_of(
        call(app, "GET", &format!("/fhir/R4/Patient/{id}"), &in_a, None).await,
        200,
    )
    .await;
    assert_eq!(still, p);
}

on_both_backends!(
    other_organizations_see_nothing_on,
    other_organizations_see_nothing
);
