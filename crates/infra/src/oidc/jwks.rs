//! The issuer's signing keys: discovery, JWKS fetch, cache and refresh policy.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use carapace_auth::AuthError;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use serde::Deserialize;

use super::{MAX_KID_LEN, OidcSettings};

/// Largest discovery document or JWKS read, in bytes.
const MAX_DOC_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
const MAX_KEYS: usize = 64;

/// The kind of public key, which fixes the algorithms it may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyFamily {
    Rsa,
    Ec,
}

#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    family: KeyFamily,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Key>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// The state of the key cache, for readiness and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcStatus {
    /// Keys currently cached.
    pub keys: usize,
    /// Whether cached keys are usable (fetched within the stale limit).
    pub usable: bool,
    /// The last refresh failure, if the last attempt failed.
    pub last_error: Option<String>,
}

/// How often [`KeyCache::recover`] may try again while no key is usable.
const RECOVER_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

pub(super) struct KeyCache {
    issuer: String,
    ttl: Duration,
    min_interval: Duration,
    max_stale: Duration,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl KeyCache {
    pub(super) fn new(s: &OidcSettings) -> Result<Self, reqwest::Error> {
        // reqwest is built without a default TLS provider; ring is the one.
        // Installing is idempotent: an already-installed provider stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(s.http_timeout)
            .connect_timeout(s.http_timeout)
            .build()?;
        Ok(Self {
            issuer: s.issuer.clone(),
            ttl: s.jwks_ttl,
            min_interval: s.min_refresh_interval,
            max_stale: s.max_stale,
            http,
            cache: RwLock::new(Cache::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub(super) fn status(&self) -> OidcStatus {
        match self.cache.read() {
            Ok(c) => OidcStatus {
                keys: c.keys.len(),
                usable: !c.keys.is_empty()
                    && c.fetched_at.is_some_and(|t| t.elapsed() <= self.max_stale),
                last_error: c.last_error.clone(),
            },
            Err(_) => OidcStatus {
                keys: 0,
                usable: false,
                last_error: Some("cache poisoned".into()),
            },
        }
    }

    /// The key for `kid`, refreshing (within the rate limit) when it is
    /// unknown or the cache has aged past its TTL.
    pub(super) async fn key(&self, kid: &str, family: KeyFamily) -> Result<DecodingKey, AuthError> {
        let (found, fresh) = self.lookup(kid);
        if found.is_none() || !fresh {
            self.refresh(false).await;
        }
        let (found, _) = self.lookup(kid);
        let usable = self.status().usable;
        match found {
            Some(_) if !usable => Err(AuthError::Unavailable),
            Some(key) if key.family == family => Ok(key.decoding),
            Some(_) => Err(AuthError::InvalidToken("algorithm does not match the key")),
            None if !usable => Err(AuthError::Unavailable),
            None => Err(AuthError::InvalidToken("unknown kid")),
        }
    }

    fn lookup(&self, kid: &str) -> (Option<Key>, bool) {
        match self.cache.read() {
            Ok(c) => (
                c.keys.get(kid).cloned(),
                c.fetched_at.is_some_and(|t| t.elapsed() < self.ttl),
            ),
            Err(_) => (None, false),
        }
    }

    /// Fetches discovery and JWKS unless another refresh ran within the
    /// minimum interval (`force` skips that check). One refresh at a time;
    /// requests that waited for it reuse its result.
    pub(super) async fn refresh(&self, force: bool) {
        let interval = if force {
            Duration::ZERO
        } else {
            self.min_interval
        };
        self.refresh_after(interval).await;
    }

    /// With no usable keys (the issuer was down at start, or nothing has
    /// asked for keys in the stale limit), fetches them again, at most
    /// every [`RECOVER_INTERVAL`]: readiness calls this, so an instance
    /// that no traffic reaches while it is not ready still recovers.
    pub(super) async fn recover(&self) {
        if !self.status().usable {
            self.refresh_after(RECOVER_INTERVAL.min(self.min_interval))
                .await;
        }
    }

    async fn refresh_after(&self, interval: Duration) {
        let _guard = self.refresh_lock.lock().await;
        let recent = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.last_attempt)
            .is_some_and(|t| t.elapsed() < interval);
        if recent {
            return;
        }
        let result = self.fetch().await;
        let Ok(mut c) = self.cache.write() else {
            return;
        };
        c.last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "fetched the OIDC issuer's signing keys");
                c.keys = keys;
                c.fetched_at = Some(Instant::now());
                c.last_error = None;
            }
            Err(e) => {
                tracing::error!(error = %e, cached_keys = c.keys.len(), "could not refresh the OIDC issuer's signing keys");
                c.last_error = Some(e);
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, String> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&discovery_url).await?;
        if discovery.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err("discovery document names a different issuer".into());
        }
        let jwks_uri =
            url::Url::parse(&discovery.jwks_uri).map_err(|_| "jwks_uri is not a URL".to_owned())?;
        let issuer_scheme = url::Url::parse(&self.issuer)
            .map(|u| u.scheme().to_owned())
            .unwrap_or_default();
        if jwks_uri.scheme() != "https" && jwks_uri.scheme() != issuer_scheme {
            return Err("jwks_uri must use https".into());
        }
        let set: JwkSet = self.get_json(jwks_uri.as_str()).await?;
        Ok(usable_keys(&set))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {url}: status {}", res.status()));
        }
        if res
            .content_length()
            .is_some_and(|n| n > u64::try_from(MAX_DOC_BYTES).unwrap_or(u64::MAX))
        {
            return Err(format!("GET {url}: document too large"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOC_BYTES {
                return Err(format!("GET {url}: document too large"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: invalid JSON: {e}"))
    }
}

/// Signing keys of the kinds Carapace accepts (RSA, EC P-256), by `kid`.
fn usable_keys(set: &JwkSet) -> HashMap<String, Key> {
    let mut keys = HashMap::new();
    for jwk in set.keys.iter().take(MAX_KEYS) {
        let Some(kid) = jwk
            .common
            .key_id
            .as_deref()
            .filter(|k| !k.is_empty() && k.len() <= MAX_KID_LEN)
        else {
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                KeyFamily::Ec
            }
            _ => continue,
        };
        if let Ok(decoding) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid.to_owned(), Key { decoding, family });
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_and_p256_signing_keys_are_kept() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "use": "sig", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "e", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut kids: Vec<String> = usable_keys(&set).into_keys().collect();
        kids.sort();
        assert_eq!(kids, vec!["e".to_owned(), "r".to_owned()]);
    }
}
