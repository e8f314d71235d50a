//! The FHIR R4 API as a client and an attacker use it: the same decisions
//! and audit events as the REST routes, versioned updates, searches page
//! by page, errors as OperationOutcome, tenancy and SMART scopes.

mod appointments;
mod audit_events;
mod clinical;
mod consultations;
mod export;
mod patients;
mod practitioners;
mod scopes;
mod search_params;

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::support::{Org, TestApp, send};

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

/// Tomorrow (or `days` ahead) at `hour`:00 UTC, as FHIR writes it.
fn day_at(days: i64, hour: u8) -> String {
    let t = (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .replace_time(time::Time::from_hms(hour, 0, 0).unwrap_or_else(|e| panic!("{e}")));
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
