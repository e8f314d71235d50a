//! The FHIR R4 API as a client and an attacker use it: the same decisions
//! and audit events as the REST routes, versioned updates, searches page
//! by page, errors as OperationOutcome, tenancy and SMART scopes.

use carapace_auth::Role;
use carapace_testkit::issuer::{AUDIENCE, TestIssuer, TestKey};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, Org, TestApp, send, spawn_app, spawn_app_with};

const FHIR: &str = "application/fhir+json";

/// A change that spoils a valid resource.
type Edit = fn(&mut Value);

fn jane(given: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:carapace:member-id", "value": format!("M-{given}")}],
        "name": [{"family": "Roe", "given": [given]}],
        "telecom": [{"system": "phone", "value": "+1 555 010 0100"}, {"system": "email", "value": "jane@example.org"}],
        "gender": "female",
        "birthDate": "1980-02-03",
    })
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        app.url(path)
    };
    let mut req = app
        .http
        .request(method.parse().unwrap_or_else(|e| panic!("{e}")), url)
        .bearer_auth(token)
        .header("accept", FHIR);
    if let Some(b) = body {
        req = req.header("content-type", FHIR).body(b.to_string());
    }
    send(req).await
}

/// Asserts an OperationOutcome answer with `status`; returns it.
async fn outcome(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with(FHIR), "content type {ct}");
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert!(
        body["issue"][0]["severity"].is_string() && body["issue"][0]["code"].is_string(),
        "{body}"
    );
    body
}

async fn json_of(res: reqwest::Response, status: u16) -> (Value, reqwest::header::HeaderMap) {
    assert_eq!(res.status().as_u16(), status, "status");
    let headers = res.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(ct.starts_with(FHIR), "content type {ct}");
    (res.json().await.unwrap_or_else(|e| panic!("{e}")), headers)
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The (action, outcome) of the audit events of the request `request_id`.
async fn events_of(app: &TestApp, org: &Org, request_id: &str) -> Vec<(String, String)> {
    let compliance = app.token_as(org, Role::Compliance, "compliance-officer");
    let res = app
        .get(
            "/api/v1/audit-events?limit=500&resource_type=patient",
            &compliance,
        )
        .await;
    let page: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    page["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["origin"]["request_id"] == request_id)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Every entry's resource ids, following `next` links to the end.
async fn all_pages(app: &TestApp, path: &str, token: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(url) = next.take() {
        let (bundle, _) = json_of(call(app, "GET", &url, token, None).await, 200).await;
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "searchset");
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        for e in &entries {
            assert_eq!(e["search"]["mode"], "match");
            let id = e["resource"]["id"].as_str().unwrap_or_default();
            assert!(
                e["fullUrl"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(&format!("/fhir/R4/Patient/{id}")))
            );
        }
        pages.push(
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                .collect(),
        );
        next = bundle["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.starts_with("http"), "next links are absolute: {n}");
        }
        assert!(pages.len() < 20, "paging ends");
    }
    pages
}

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

async fn scopes_narrow_what_roles_allow(backend: Backend, test: &str) {
    let issuer = TestIssuer::start();
    let url = issuer.url.clone();
    let Some(app) = spawn_app_with(backend, test, move |s| {
        s.oidc_issuer = Some(url);
        s.oidc_audience = Some(AUDIENCE.into());
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let (p, _) = json_of(
        call(&app, "POST", "/fhir/R4/Patient", &admin, Some(&jane("Sam"))).await,
        201,
    )
    .await;
    let id = p["id"].as_str().unwrap_or_default().to_owned();
    let token = |roles: &[&str], scope: Value| {
        let mut claims = issuer.claims(&org.id.to_string(), roles);
        claims["scope"] = scope;
        claims["amr"] = json!(["pwd", "mfa"]);
        issuer.sign(TestKey::Rsa1, &claims)
    };
    // Read only: reading works on both surfaces; searching, writing and
    // everything else the admin role would allow does not.
    let read_only = token(&["admin"], json!("openid user/Patient.r"));
    json_of(
        call(
            &app,
            "GET",
            &format!("/fhir/R4/Patient/{id}"),
            &read_only,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/patients/{id}"), &read_only)
            .await
            .status(),
        200
    );
    let oo = outcome(
        call(&app, "GET", "/fhir/R4/Patient", &read_only, None).await,
        403,
    )
    .await;
    assert_eq!(
        oo["issue"][0]["details"]["coding"][0]["code"],
        "insufficient_scope"
    );
    assert_eq!(app.get("/api/v1/patients", &read_only).await.status(), 403);
    outcome(
        call(
            &app,
            "POST",
            "/fhir/R4/Patient",
            &read_only,
            Some(&jane("No")),
        )
        .await,
        403,
    )
    .await;
    outcome(
        call(
            &app,
            "PUT",
            &format!("/fhir/R4/Patient/{id}"),
            &read_only,
            Some(&p),
        )
        .await,
        403,
    )
    .await;
    outcome(
        call(
            &app,
            "DELETE",
            &format!("/fhir/R4/Patient/{id}"),
            &read_only,
            None,
        )
        .await,
        403,
    )
    .await;
    assert_eq!(app.get("/api/v1/users", &read_only).await.status(), 403);
    assert_eq!(
        app.get("/api/v1/audit-events", &read_only).await.status(),
        403
    );
    // Scopes never widen: a viewer with every scope still cannot write.
    let viewer = token(&["viewer"], json!("system/*.cruds"));
    outcome(
        call(&app, "POST", "/fhir/R4/Patient", &viewer, Some(&jane("No"))).await,
        403,
    )
    .await;
    json_of(
        call(
            &app,
            "GET",
            &format!("/fhir/R4/Patient/{id}"),
            &viewer,
            None,
        )
        .await,
        200,
    )
    .await;
    // A patient/ scope reaches the user's own record only, whatever the
    // role: this staff user has none.
    let own = token(&["staff"], json!("launch/patient patient/*.rs"));
    outcome(
        call(&app, "GET", &format!("/fhir/R4/Patient/{id}"), &own, None).await,
        403,
    )
    .await;
    assert!(
        all_pages(&app, "/fhir/R4/Patient", &own)
            .await
            .concat()
            .is_empty()
    );
    // Scopes Carapace does not honour grant nothing.
    let odd = token(
        &["admin"],
        json!("user/Patient.rs?identifier=x user/Observation.rs"),
    );
    outcome(
        call(&app, "GET", &format!("/fhir/R4/Patient/{id}"), &odd, None).await,
        403,
    )
    .await;
    // A malformed scope claim is a bad token.
    let bad = token(&["admin"], json!(["user/Patient.r"]));
    outcome(
        call(&app, "GET", &format!("/fhir/R4/Patient/{id}"), &bad, None).await,
        401,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn scopes_narrow_what_roles_allow_on_sqlite() {
    scopes_narrow_what_roles_allow(Backend::Sqlite, "fhir_scopes_narrow_on_sqlite").await;
}

#[tokio::test]
async fn scopes_narrow_what_roles_allow_on_postgres() {
    scopes_narrow_what_roles_allow(Backend::Postgres, "fhir_scopes_narrow_on_postgres").await;
}

#[tokio::test]
async fn errors_before_the_handler_are_operation_outcomes_too() {
    let Some(app) = spawn_app(Backend::Sqlite, "fhir_errors_before_the_handler").await else {
        return;
    };
    let org = app.org().await;
    let clinician = app.token(&org, Role::Clinician);
    let res = send(
        app.http
            .post(app.url("/fhir/R4/Patient"))
            .bearer_auth(&clinician)
            .header("content-type", FHIR)
            .body(vec![b' '; 2 * 1024 * 1024]),
    )
    .await;
    outcome(res, 413).await;
    let res = send(
        app.http
            .patch(app.url("/fhir/R4/Patient"))
            .bearer_auth(&clinician),
    )
    .await;
    let status = res.status().as_u16();
    assert!(matches!(status, 404 | 405), "{status}");
    outcome(res, status).await;
    app.stop().await;
}

/// Tomorrow (or `days` ahead) at `hour`:00 UTC, as FHIR writes it.
fn day_at(days: i64, hour: u8) -> String {
    let t = (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .replace_time(time::Time::from_hms(hour, 0, 0).unwrap_or_else(|e| panic!("{e}")));
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

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

    // Outside the care team, and in another organization: nothing.
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    for path in [
        format!("/fhir/R4/CareTeam?patient={pid}"),
        format!("/fhir/R4/CareTeam/{pid}"),
        format!("/fhir/R4/MedicationStatement?patient={pid}"),
        format!("/fhir/R4/AdverseEvent?subject={pid}"),
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
