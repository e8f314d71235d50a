//! SMART Backend Services as a payer's system and an attacker use it: a
//! service key registered with public keys trades a signed assertion for a
//! five-minute token with system/ scopes; every way to forge, replay or
//! stretch an assertion is refused, and revoking the key ends its tokens.

use carapace_auth::Role;
use carapace_testkit::issuer::TestKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, patient, send, spawn_app};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

fn sign(key: TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg());
    header.kid = Some(key.kid().to_owned());
    encode(&header, claims, &key.encoding()).unwrap_or_else(|e| panic!("{e}"))
}

fn claims(client: &str, aud: &str) -> Value {
    json!({"iss": client, "sub": client, "aud": aud, "exp": now() + 240,
           "jti": uuid::Uuid::new_v4().to_string()})
}

async fn exchange(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    send(
        app.http
            .post(app.url("/api/v1/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await
}

async fn token_for(app: &TestApp, assertion: &str, scope: &str) -> reqwest::Response {
    exchange(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", scope),
        ],
    )
    .await
}

/// Asserts an OAuth refusal: `status`, problem+json carrying RFC 6749's
/// `error`.
async fn refused(res: reqwest::Response, status: u16, error: &str) {
    assert_eq!(res.status().as_u16(), status);
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
}

async fn backend_client(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let created = app.create_patient(&admin, &patient("Payer")).await;
    assert_eq!(created.status(), 201);
    // An administrator registers the payer's public keys.
    let res = send(
        app.http
            .post(app.url("/api/v1/service-keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "payer export", "roles": ["viewer"],
                          "jwks": {"keys": [TestKey::Ec1.jwk(), TestKey::Rsa1.jwk()]}})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let key: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    let client = key["client_id"].as_str().unwrap_or_default().to_owned();
    assert!(client.starts_with("cbs_"), "{key}");
    let smart: Value = send(
        app.http
            .get(app.url("/fhir/R4/.well-known/smart-configuration")),
    )
    .await
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let aud = smart["token_endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(aud, app.url("/api/v1/auth/token"));

    // The exchange: a five-minute bearer token holding the scopes asked.
    let assertion = sign(TestKey::Ec1, &claims(&client, &aud));
    let res = token_for(app, &assertion, "system/Patient.rs").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let granted: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(granted["token_type"], "bearer");
    assert_eq!(granted["expires_in"], 300);
    assert_eq!(granted["scope"], "system/Patient.rs");
    let token = granted["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bundle = app.get("/fhir/R4/Patient", &token).await;
    assert_eq!(bundle.status(), 200);
    let bundle: Value = bundle.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        bundle["entry"].as_array().map(Vec::len),
        Some(1),
        "{bundle}"
    );
    // Within the scope and the key's roles only.
    assert_eq!(app.get("/fhir/R4/Appointment", &token).await.status(), 403);
    assert_eq!(app.get("/api/v1/service-keys", &token).await.status(), 403);
    let write = send(
        app.http
            .post(app.url("/fhir/R4/Patient"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient"}).to_string()),
    )
    .await;
    assert_eq!(write.status(), 403);

    // The same assertion twice: refused the second time.
    refused(
        token_for(app, &assertion, "system/Patient.rs").await,
        401,
        "invalid_client",
    )
    .await;
    // Two racing uses of one fresh assertion: one token.
    let fresh = sign(TestKey::Rsa1, &claims(&client, &aud));
    let (a, b) = tokio::join!(
        token_for(app, &fresh, "system/Patient.rs"),
        token_for(app, &fresh, "system/Patient.rs")
    );
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 401]);

    // Forged and stretched assertions.
    let mut bad: Vec<(String, &str)> = Vec::new();
    let mut c = claims(&client, "https://elsewhere.example/token");
    bad.push((sign(TestKey::Ec1, &c), "another audience"));
    c = claims(&client, &aud);
    c["exp"] = json!(now() + 3600);
    bad.push((sign(TestKey::Ec1, &c), "an hour ahead"));
    c = claims(&client, &aud);
    c["exp"] = json!(now() - 10);
    bad.push((sign(TestKey::Ec1, &c), "expired"));
    c = claims(&client, &aud);
    c["sub"] = json!("someone-else");
    bad.push((sign(TestKey::Ec1, &c), "sub is not the client"));
    c = claims(&client, &aud);
    c.as_object_mut().map(|o| o.remove("jti"));
    bad.push((sign(TestKey::Ec1, &c), "no jti"));
    // Signed by a key the client never registered (kid of a registered one).
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let other = encode(&header, &claims(&client, &aud), &TestKey::Rsa2.encoding())
        .unwrap_or_else(|e| panic!("{e}"));
    bad.push((other, "another key under a registered kid"));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-2".into());
    let unknown = encode(&header, &claims(&client, &aud), &TestKey::Rsa2.encoding())
        .unwrap_or_else(|e| panic!("{e}"));
    bad.push((unknown, "an unregistered kid"));
    // The public key used as an HMAC secret (algorithm confusion).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = encode(
        &header,
        &claims(&client, &aud),
        &EncodingKey::from_secret(TestKey::Rsa1.public_pem().as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    bad.push((confused, "HS256 with the public key"));
    // An unsigned assertion.
    let unsigned = {
        use base64::Engine as _;
        let enc =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            enc(&json!({"alg": "none", "kid": "ec-1"})),
            enc(&claims(&client, &aud))
        )
    };
    bad.push((unsigned, "alg none"));
    // Another organization's id with this key's id.
    let elsewhere = app.org().await;
    let forged_client = client.replace(&org.id.to_string(), &elsewhere.id.to_string());
    bad.push((
        sign(TestKey::Ec1, &claims(&forged_client, &aud)),
        "another organization's client id",
    ));
    for (assertion, what) in bad {
        let res = token_for(app, &assertion, "system/Patient.rs").await;
        assert_eq!(res.status().as_u16(), 401, "{what}");
        refused(res, 401, "invalid_client").await;
    }

    // Bad requests.
    let ok = sign(TestKey::Ec1, &claims(&client, &aud));
    refused(
        token_for(app, &ok, "patient/*.rs").await,
        400,
        "invalid_scope",
    )
    .await;
    refused(token_for(app, &ok, "").await, 400, "invalid_scope").await;
    refused(
        exchange(
            app,
            &[
                ("grant_type", "password"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &ok),
                ("scope", "system/Patient.rs"),
            ],
        )
        .await,
        400,
        "unsupported_grant_type",
    )
    .await;
    refused(
        exchange(
            app,
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &ok),
                ("scope", "system/Patient.rs"),
            ],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    let as_json = send(
        app.http
            .post(app.url("/api/v1/auth/token"))
            .json(&json!({"grant_type": "client_credentials"})),
    )
    .await;
    assert_eq!(as_json.status(), 415);
    // A JWKS with a private key, or a symmetric one, is refused.
    for jwks in [
        json!({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}),
        json!({"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB", "d": "AQAB"}]}),
    ] {
        let res = send(
            app.http
                .post(app.url("/api/v1/service-keys"))
                .bearer_auth(&admin)
                .json(&json!({"name": "bad", "roles": ["viewer"], "jwks": jwks})),
        )
        .await;
        assert_eq!(res.status(), 422);
    }

    // Revoking the key ends the token it already holds, and new exchanges.
    let id = key["id"].as_str().unwrap_or_default();
    assert_eq!(
        app.delete(&format!("/api/v1/service-keys/{id}"), &admin)
            .await
            .status(),
        204
    );
    assert_eq!(app.get("/fhir/R4/Patient", &token).await.status(), 401);
    refused(
        token_for(app, &ok, "system/Patient.rs").await,
        401,
        "invalid_client",
    )
    .await;
}

on_both_backends!(backend_client_on, backend_client);
