//! Tokens signed by the trusted issuer's own key, but with registered
//! claims an attacker (or a misconfigured provider) bends: each of `iss`,
//! the audience (`aud`; Cognito: `client_id`), `exp`, `sub` and `nbf`
//! missing, `null`, of the wrong JSON type or with the wrong value. Every
//! one is 401 problem+json with `WWW-Authenticate` on a PHI route, where
//! the valid token reads the record (200); for both the generic and the
//! Cognito flavor.

use carapace_server::settings::OidcProvider;
use carapace_testkit::issuer::{AUDIENCE, TestIssuer, TestKey, now};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, problem, spawn_app_with};

async fn app_with(issuer: &TestIssuer, provider: OidcProvider, test: &str) -> Option<TestApp> {
    let url = issuer.url.clone();
    spawn_app_with(Backend::Sqlite, test, move |s| {
        s.oidc_issuer = Some(url);
        s.oidc_audience = Some(AUDIENCE.into());
        s.oidc_provider = provider;
    })
    .await
}

/// `base` with `claim` set to `value`, or removed for `None`.
fn with(base: &Value, claim: &str, value: Option<Value>) -> Value {
    let mut claims = base.clone();
    if let Some(m) = claims.as_object_mut() {
        match value {
            Some(v) => m.insert(claim.to_owned(), v),
            None => m.remove(claim),
        };
    }
    claims
}

/// Missing, `null` and every wrong JSON type for a claim whose right
/// value is `good` (a string claim; numbers are listed by the caller).
fn shapes(good: &Value) -> Vec<Option<Value>> {
    vec![
        None,
        Some(Value::Null),
        Some(json!(12345)),
        Some(json!(true)),
        Some(json!({ "value": good })),
        Some(json!([good])),
    ]
}

/// The bent claims every flavor refuses: `iss`, `exp`, `sub`, `nbf`.
fn bent_registered_claims(issuer: &str) -> Vec<(&'static str, Option<Value>)> {
    let mut cases = Vec::new();
    let iss = json!(issuer);
    for v in shapes(&iss) {
        cases.push(("iss", v));
    }
    for v in [
        json!("http://127.0.0.1:1/evil"),
        json!(format!("{issuer}/")),
        json!(""),
    ] {
        cases.push(("iss", Some(v)));
    }
    let exp = json!(now() + 600);
    for v in [
        None,
        Some(Value::Null),
        Some(json!((now() + 600).to_string())),
        Some(json!(true)),
        Some(json!({ "value": exp })),
        Some(json!([exp])),
        // Expired beyond the 60 s leeway.
        Some(json!(now() - 3600)),
    ] {
        cases.push(("exp", v));
    }
    for v in shapes(&json!("issuer-user-1")) {
        cases.push(("sub", v));
    }
    cases.push(("sub", Some(json!(""))));
    // `nbf` is optional, but when present it is a number and in the past.
    let nbf = json!(now());
    for v in [
        Value::Null,
        json!(now().to_string()),
        json!(false),
        json!({ "value": nbf }),
        json!([nbf]),
        json!(now() + 3600),
    ] {
        cases.push(("nbf", Some(v)));
    }
    cases
}

/// A PHI read with `token` must be 401 with a `WWW-Authenticate` challenge.
async fn refused(app: &TestApp, path: &str, token: &str, what: &str) {
    let res = app.get(path, token).await;
    assert_eq!(res.status(), 401, "{what}");
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
    let body = problem(res, 401).await;
    assert_eq!(body["code"], "invalid_token", "{what}");
}

/// Creates a patient with the valid `claims` and returns its path (the
/// valid token reads it: 200).
async fn readable_record(app: &TestApp, issuer: &TestIssuer, claims: &Value) -> String {
    let token = issuer.sign(TestKey::Rsa1, claims);
    let id = app.new_patient(&token, "Priya").await;
    let path = format!("/api/v1/patients/{id}");
    let read = app.get(&path, &token).await;
    assert_eq!(read.status(), 200, "the valid token reads PHI");
    path
}

#[tokio::test]
async fn generic_tokens_need_every_registered_claim_with_its_type_and_value() {
    let issuer = TestIssuer::start();
    let Some(app) = app_with(&issuer, OidcProvider::Generic, "attack_oidc_generic").await else {
        return;
    };
    let org = app.org().await;
    let base = issuer.claims(&org.id.to_string(), &["clinician"]);
    let path = readable_record(&app, &issuer, &base).await;

    let mut cases = bent_registered_claims(&issuer.url);
    let aud = json!(AUDIENCE);
    for v in shapes(&aud) {
        // `[AUDIENCE]` is a valid audience array: accepted below.
        if v.as_ref().is_some_and(Value::is_array) {
            continue;
        }
        cases.push(("aud", v));
    }
    for v in [
        json!("some-other-api"),
        json!(""),
        json!([]),
        json!(["some-other-api"]),
        json!(["some-other-api", 7]),
        json!([AUDIENCE, 7]),
    ] {
        cases.push(("aud", Some(v)));
    }
    for (claim, value) in cases {
        let token = issuer.sign(TestKey::Rsa1, &with(&base, claim, value.clone()));
        refused(&app, &path, &token, &format!("{claim} = {value:?}")).await;
    }
    // What the specification allows is accepted: an audience array naming
    // this audience, a token without `nbf`, ES256 as well as RS256.
    for (claim, value) in [
        ("aud", Some(json!([AUDIENCE]))),
        ("aud", Some(json!(["some-other-api", AUDIENCE]))),
        ("nbf", None),
    ] {
        let token = issuer.sign(TestKey::Rsa1, &with(&base, claim, value.clone()));
        let res = app.get(&path, &token).await;
        assert_eq!(res.status(), 200, "{claim} = {value:?}");
    }
    let es256 = issuer.sign(TestKey::Ec1, &with(&base, "aud", None));
    refused(&app, &path, &es256, "ES256 without aud").await;
    app.stop().await;
}

#[tokio::test]
async fn cognito_access_tokens_need_client_id_and_every_registered_claim() {
    let issuer = TestIssuer::start();
    let Some(app) = app_with(&issuer, OidcProvider::Cognito, "attack_oidc_cognito").await else {
        return;
    };
    let org = app.org().await;
    let base = json!({
        "iss": issuer.url, "sub": "cognito-user-1", "token_use": "access",
        "client_id": AUDIENCE, "iat": now(), "nbf": now(), "exp": now() + 600,
        "custom:org_id": org.id.to_string(), "cognito:groups": ["clinician"],
    });
    let path = readable_record(&app, &issuer, &base).await;

    let mut cases = bent_registered_claims(&issuer.url);
    for v in shapes(&json!(AUDIENCE)) {
        cases.push(("client_id", v));
    }
    cases.push(("client_id", Some(json!("another-app-client"))));
    cases.push(("client_id", Some(json!(""))));
    for v in [None, Some(json!("id")), Some(json!(["access"]))] {
        cases.push(("token_use", v));
    }
    // An `aud` that names another audience is not ours either.
    cases.push(("aud", Some(json!("some-other-api"))));
    cases.push(("aud", Some(json!(7))));
    for (claim, value) in cases {
        let token = issuer.sign(TestKey::Rsa1, &with(&base, claim, value.clone()));
        refused(&app, &path, &token, &format!("{claim} = {value:?}")).await;
    }
    for (claim, value) in [("aud", Some(json!(AUDIENCE))), ("nbf", None)] {
        let token = issuer.sign(TestKey::Rsa1, &with(&base, claim, value.clone()));
        let res = app.get(&path, &token).await;
        assert_eq!(res.status(), 200, "{claim} = {value:?}");
    }
    app.stop().await;
}
