//! Issuer tokens against a real local OIDC issuer over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use carapace_auth::issuer::{ClaimRules, IssuerFlavor};
use carapace_auth::{AuthError, Role, TokenVerifier as _};
use carapace_infra::dev_token::DevTokens;
use carapace_infra::oidc::{OidcSettings, OidcVerifier};
use carapace_infra::tokens::Verifiers;
use carapace_infra::{Database, SeaOrganizations};
use carapace_tenancy::TenantContext;
use carapace_testkit::issuer::{AUDIENCE, TestIssuer, TestKey, now};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{new_org, sqlite};

struct Fixture {
    issuer: TestIssuer,
    verifier: Arc<OidcVerifier>,
    org: TenantContext,
    _db: Database,
    _dir: tempfile::TempDir,
}

fn rules(flavor: IssuerFlavor) -> ClaimRules {
    ClaimRules {
        audience: AUDIENCE.into(),
        flavor,
        org_claim: "org_id".into(),
        roles_claim: "roles".into(),
    }
}

async fn fixture_with(configure: impl FnOnce(&mut OidcSettings)) -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let org = new_org(&db).await;
    let issuer = TestIssuer::start();
    let mut settings = OidcSettings::new(issuer.url.clone(), rules(IssuerFlavor::Standard));
    configure(&mut settings);
    let verifier = OidcVerifier::new(settings, SeaOrganizations::new(db.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    verifier.warm().await;
    Fixture {
        issuer,
        verifier: Arc::new(verifier),
        org,
        _db: db,
        _dir: dir,
    }
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

impl Fixture {
    fn claims(&self) -> Value {
        self.issuer
            .claims(&self.org.org().to_string(), &["clinician"])
    }

    async fn verify(&self, token: &str) -> Result<carapace_auth::Principal, AuthError> {
        self.verifier.verify(token).await
    }
}

fn is_invalid(r: &Result<carapace_auth::Principal, AuthError>) -> bool {
    matches!(r, Err(AuthError::InvalidToken(_)))
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_verify() {
    let f = fixture().await;
    for key in [TestKey::Rsa1, TestKey::Ec1] {
        let p = f
            .verify(&f.issuer.sign(key, &f.claims()))
            .await
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(p.org(), f.org.org());
        assert_eq!(p.subject().as_str(), "oidc:issuer-user-1");
        assert!(p.roles().contains(Role::Clinician));
        assert!(!p.mfa());
    }
    let mut mfa = f.claims();
    mfa["amr"] = json!(["pwd", "mfa"]);
    assert!(
        f.verify(&f.issuer.sign(TestKey::Rsa1, &mfa))
            .await
            .is_ok_and(|p| p.mfa())
    );
}

#[tokio::test]
async fn alg_none_and_hmac_tokens_are_refused() {
    let f = fixture().await;
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&f.claims())
    );
    assert!(is_invalid(&f.verify(&none).await));

    // Algorithm confusion: HS256 keyed with the issuer's public key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &f.claims(),
        &EncodingKey::from_secret(TestKey::Rsa1.public_pem().as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(is_invalid(&f.verify(&confused).await));

    // Through the one verification path, with and without dev tokens on.
    let dev = DevTokens::new(&SecretString::from("d".repeat(32))).unwrap_or_else(|e| panic!("{e}"));
    let oidc_only = Verifiers::new(None, None, None);
    assert!(matches!(
        oidc_only
            .verify(&SecretString::from(confused.clone()))
            .await,
        Err(AuthError::InvalidToken(_))
    ));
    let both = Verifiers::new(Some(dev), None, None);
    assert!(matches!(
        both.verify(&SecretString::from(confused)).await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn registered_claims_are_checked() {
    let f = fixture().await;
    let cases: Vec<(&str, Value)> = vec![
        (
            "expired",
            json!({"exp": now() - 3600, "iat": now() - 7200, "nbf": now() - 7200}),
        ),
        ("not yet valid", json!({"nbf": now() + 3600})),
        ("wrong issuer", json!({"iss": "http://127.0.0.1:1/evil"})),
        ("wrong audience", json!({"aud": "some-other-api"})),
        ("no exp", json!({"exp": null})),
        ("no org", json!({"org_id": null})),
        ("org not a uuid", json!({"org_id": "acme"})),
        (
            "unknown org",
            json!({"org_id": "0190d5a4-0000-7000-8000-00000000dead"}),
        ),
        ("id token", json!({"token_use": "id"})),
        ("no aud", json!({"aud": null})),
        ("aud of the wrong type", json!({"aud": 7})),
        ("aud array with a non-string", json!({"aud": [AUDIENCE, 7]})),
        ("iss as an array", json!({"iss": [f.issuer.url]})),
        ("no sub", json!({"sub": null})),
        ("nbf not a number", json!({"nbf": "0"})),
    ];
    for (name, change) in cases {
        let mut claims = f.claims();
        for (k, v) in change.as_object().into_iter().flatten() {
            if v.is_null() {
                claims.as_object_mut().map(|m| m.remove(k));
            } else {
                claims[k] = v.clone();
            }
        }
        let r = f.verify(&f.issuer.sign(TestKey::Rsa1, &claims)).await;
        assert!(is_invalid(&r), "{name}: {r:?}");
    }
}

#[tokio::test]
async fn tampered_oversized_and_garbage_tokens_are_refused() {
    let f = fixture().await;
    let good = f.issuer.sign(TestKey::Rsa1, &f.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = f.claims();
    claims["roles"] = json!(["admin"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert!(is_invalid(&f.verify(&tampered).await));
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(16 * 1024), parts[2]);
    assert!(is_invalid(&f.verify(&huge).await));
    for junk in ["", "a.b", "a.b.c", "....", "\u{0}"] {
        assert!(is_invalid(&f.verify(junk).await), "{junk:?}");
    }
}

#[tokio::test]
async fn header_urls_and_embedded_keys_are_never_fetched_or_used() {
    let f = fixture().await;
    // An attacker's server that counts connections.
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let attacker_url = format!(
        "http://{}/keys.json",
        attacker.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while attacker.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Signed with a key the issuer does not publish (rsa-2), pointing at it.
    let embedded: jsonwebtoken::jwk::Jwk =
        serde_json::from_str(include_str!("../../../testkit/fixtures/rsa2.jwk.json"))
            .unwrap_or_else(|e| panic!("{e}"));
    for kid in ["attacker-key", "rsa-1"] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        header.jku = Some(attacker_url.clone());
        header.x5u = Some(attacker_url.clone());
        header.jwk = Some(embedded.clone());
        let token = f.issuer.sign_with(header, TestKey::Rsa2, &f.claims());
        assert!(is_invalid(&f.verify(&token).await), "kid {kid}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request ever went to a URL from a token"
    );
}

#[tokio::test]
async fn hostile_kids_are_only_lookup_keys() {
    let f = fixture().await;
    for kid in [
        "../../dev/null",
        "' OR 1=1 --",
        "$(reboot)",
        "%00",
        &"k".repeat(500),
    ] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let token = f.issuer.sign_with(header, TestKey::Rsa1, &f.claims());
        assert!(is_invalid(&f.verify(&token).await), "{kid}");
    }
    let no_kid = f
        .issuer
        .sign_with(Header::new(Algorithm::RS256), TestKey::Rsa1, &f.claims());
    assert!(is_invalid(&f.verify(&no_kid).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_storm_causes_at_most_one_refresh() {
    let f = fixture().await;
    let baseline = f.issuer.jwks_fetches();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("not-published".into());
    let token = f.issuer.sign_with(header, TestKey::Rsa1, &f.claims());
    let mut storm = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (verifier, token) = (f.verifier.clone(), token.clone());
        storm.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(r) = storm.join_next().await {
        assert!(is_invalid(&r.unwrap_or_else(|e| panic!("{e}"))));
    }
    let fetched = f.issuer.jwks_fetches() - baseline;
    assert!(
        fetched <= 1,
        "1,000 unknown-kid requests caused {fetched} JWKS fetches"
    );
    // Valid tokens keep working.
    assert!(
        f.verify(&f.issuer.sign(TestKey::Rsa1, &f.claims()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_retired_keys_refused() {
    let f = fixture_with(|s| s.min_refresh_interval = Duration::ZERO).await;
    let old = f.issuer.sign(TestKey::Rsa1, &f.claims());
    assert!(f.verify(&old).await.is_ok());
    f.issuer.publish(&[TestKey::Rsa2]);
    let new = f.issuer.sign(TestKey::Rsa2, &f.claims());
    assert!(f.verify(&new).await.is_ok(), "new kid triggers a refresh");
    assert!(
        is_invalid(&f.verify(&old).await),
        "the retired key no longer verifies"
    );
}

#[tokio::test]
async fn issuer_outage_with_warm_cache_keeps_working_and_shows_in_status() {
    let f = fixture_with(|s| {
        s.jwks_ttl = Duration::ZERO;
        s.min_refresh_interval = Duration::ZERO;
    })
    .await;
    f.issuer.set_down(true);
    let token = f.issuer.sign(TestKey::Ec1, &f.claims());
    assert!(f.verify(&token).await.is_ok(), "cached keys still verify");
    let status = f.verifier.status();
    assert!(status.usable);
    assert!(status.last_error.is_some(), "the failed refresh is visible");
    f.issuer.set_down(false);
    assert!(f.verify(&token).await.is_ok());
    assert!(f.verifier.status().last_error.is_none());
}

#[tokio::test]
async fn issuer_outage_with_cold_cache_fails_fast() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let org = new_org(&db).await;
    let issuer = TestIssuer::start();
    issuer.set_down(true);
    let token = issuer.sign(
        TestKey::Rsa1,
        &issuer.claims(&org.org().to_string(), &["admin"]),
    );
    // Down (503) and unreachable (nothing listening) issuers.
    for url in [issuer.url.clone(), "http://127.0.0.1:9".to_owned()] {
        let mut settings = OidcSettings::new(url, rules(IssuerFlavor::Standard));
        settings.http_timeout = Duration::from_secs(2);
        let verifier = OidcVerifier::new(settings, SeaOrganizations::new(db.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        verifier.warm().await;
        let started = Instant::now();
        let r = verifier.verify(&token).await;
        assert!(matches!(r, Err(AuthError::Unavailable)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "no hang");
        assert!(!verifier.status().usable);
    }
}

#[tokio::test]
async fn cognito_access_tokens_need_token_use_and_client_id() {
    let f = fixture_with(|s| {
        s.rules.flavor = IssuerFlavor::Cognito;
        s.rules.org_claim = "custom:org_id".into();
        s.rules.roles_claim = "cognito:groups".into();
    })
    .await;
    let org = f.org.org().to_string();
    let base = json!({
        "iss": f.issuer.url, "sub": "cognito-user", "exp": now() + 600, "iat": now(),
        "custom:org_id": org, "cognito:groups": ["clinician"],
    });
    let mut access = base.clone();
    access["token_use"] = json!("access");
    access["client_id"] = json!(AUDIENCE);
    let p = f
        .verify(&f.issuer.sign(TestKey::Rsa1, &access))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(p.roles().contains(Role::Clinician));

    let mut id_token = base.clone();
    id_token["token_use"] = json!("id");
    id_token["aud"] = json!(AUDIENCE);
    assert!(
        is_invalid(&f.verify(&f.issuer.sign(TestKey::Rsa1, &id_token)).await),
        "ID token as access token"
    );
    let mut other_client = access.clone();
    other_client["client_id"] = json!("another-app");
    assert!(is_invalid(
        &f.verify(&f.issuer.sign(TestKey::Rsa1, &other_client)).await
    ));
}
