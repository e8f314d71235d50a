//! A real OpenID Connect issuer on a random local port: discovery and JWKS
//! over HTTP, keys it can rotate, an outage switch, and a fetch counter.
//! Tokens are signed with the test keys in `fixtures/` (they protect nothing).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// One of the fixture signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKey {
    /// RSA 2048, kid `rsa-1`.
    Rsa1,
    /// RSA 2048, kid `rsa-2`.
    Rsa2,
    /// EC P-256, kid `ec-1`.
    Ec1,
}

impl TestKey {
    /// The key's `kid`.
    pub fn kid(self) -> &'static str {
        match self {
            Self::Rsa1 => "rsa-1",
            Self::Rsa2 => "rsa-2",
            Self::Ec1 => "ec-1",
        }
    }

    /// Its algorithm.
    pub fn alg(self) -> Algorithm {
        match self {
            Self::Rsa1 | Self::Rsa2 => Algorithm::RS256,
            Self::Ec1 => Algorithm::ES256,
        }
    }

    /// The private key, PEM.
    pub fn private_pem(self) -> &'static str {
        match self {
            Self::Rsa1 => include_str!("../fixtures/rsa1.pem"),
            Self::Rsa2 => include_str!("../fixtures/rsa2.pem"),
            Self::Ec1 => include_str!("../fixtures/ec1.pem"),
        }
    }

    /// The public key, PEM (what an algorithm-confusion attacker would use
    /// as an HMAC secret).
    pub fn public_pem(self) -> &'static str {
        match self {
            Self::Rsa1 => include_str!("../fixtures/rsa1.pub.pem"),
            Self::Rsa2 => include_str!("../fixtures/rsa2.pub.pem"),
            Self::Ec1 => include_str!("../fixtures/ec1.pub.pem"),
        }
    }

    /// The public key as a JWK (with its `kid`).
    pub fn jwk(self) -> Value {
        let text = match self {
            Self::Rsa1 => include_str!("../fixtures/rsa1.jwk.json"),
            Self::Rsa2 => include_str!("../fixtures/rsa2.jwk.json"),
            Self::Ec1 => include_str!("../fixtures/ec1.jwk.json"),
        };
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    /// The private key, for signing.
    pub fn encoding(self) -> EncodingKey {
        let pem = self.private_pem().as_bytes();
        let key = match self {
            Self::Rsa1 | Self::Rsa2 => EncodingKey::from_rsa_pem(pem),
            Self::Ec1 => EncodingKey::from_ec_pem(pem),
        };
        key.unwrap_or_else(|e| panic!("fixture key: {e}"))
    }
}

struct State {
    issuer: Mutex<String>,
    published: Mutex<Vec<TestKey>>,
    down: AtomicBool,
    jwks_fetches: AtomicUsize,
}

/// The running issuer. It stops with the test's runtime.
pub struct TestIssuer {
    /// Its URL (also the `iss` of its tokens).
    pub url: String,
    state: Arc<State>,
}

/// The audience test tokens are issued for.
pub const AUDIENCE: &str = "carapace-test-api";

impl TestIssuer {
    /// Starts an issuer publishing `Rsa1` and `Ec1`.
    pub fn start() -> Self {
        let (listener, url) = crate::local_listener();
        let state = Arc::new(State {
            issuer: Mutex::new(url.clone()),
            published: Mutex::new(vec![TestKey::Rsa1, TestKey::Ec1]),
            down: AtomicBool::new(false),
            jwks_fetches: AtomicUsize::new(0),
        });
        crate::serve(listener, state.clone(), |cfg| {
            cfg.route(
                "/.well-known/openid-configuration",
                web::get().to(discovery),
            )
            .route("/jwks.json", web::get().to(jwks));
        });
        Self { url, state }
    }

    /// Publishes exactly `keys` from now on (rotation).
    pub fn publish(&self, keys: &[TestKey]) {
        if let Ok(mut p) = self.state.published.lock() {
            *p = keys.to_vec();
        }
    }

    /// Makes discovery and JWKS answer 503 (an outage) or work again.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// How many times the JWKS was served.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Standard claims for a valid access token: this issuer, the test
    /// audience, valid for ten minutes, for `org` with `roles`.
    pub fn claims(&self, org: &str, roles: &[&str]) -> Value {
        let now = now();
        json!({
            "iss": self.url, "aud": AUDIENCE, "sub": "issuer-user-1",
            "iat": now, "nbf": now, "exp": now + 600,
            "org_id": org, "roles": roles,
        })
    }

    /// Signs `claims` with `key` (header: its alg and kid).
    pub fn sign(&self, key: TestKey, claims: &Value) -> String {
        let mut header = Header::new(key.alg());
        header.kid = Some(key.kid().to_owned());
        self.sign_with(header, key, claims)
    }

    /// Signs `claims` with `key` under an arbitrary header.
    pub fn sign_with(&self, header: Header, key: TestKey, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &key.encoding()).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

async fn discovery(state: web::Data<State>) -> HttpResponse {
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let issuer = state.issuer.lock().map(|i| i.clone()).unwrap_or_default();
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(state: web::Data<State>) -> HttpResponse {
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = state
        .published
        .lock()
        .map(|p| p.iter().map(|k| k.jwk()).collect())
        .unwrap_or_default();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}
