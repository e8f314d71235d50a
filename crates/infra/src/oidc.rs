//! Access tokens from an external OpenID Connect issuer (AWS Cognito or any
//! standard provider): discovery and JWKS over HTTP, a bounded key cache,
//! and full verification before any claim is read.
//!
//! Rules that hold no matter what a token says:
//! - only RS256, PS256 (RSA keys) and ES256 (P-256 keys) are accepted;
//! - keys come only from the configured issuer's JWKS. Header fields `jku`,
//!   `x5u`, `x5c` and an embedded `jwk` are never used or fetched, and `kid`
//!   is only a key into an in-memory map;
//! - an unknown `kid` causes at most one JWKS refresh per
//!   `min_refresh_interval`, however many requests carry it;
//! - `iss`, the audience (`aud`; Cognito access tokens: `client_id`),
//!   `exp` and `sub` are required and `nbf` is honoured when present, each
//!   with its specified JSON type
//!   ([`carapace_auth::issuer::check_registered_claims`]);
//! - when the issuer is unreachable, cached keys keep working for
//!   `max_stale`; with no usable keys verification fails fast with
//!   [`AuthError::Unavailable`].

mod jwks;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use carapace_auth::issuer::{
    ClaimRules, IssuerFlavor, RegisteredClaims, check_registered_claims, read_issuer_claims,
};
use carapace_auth::{AuthError, Principal};
use carapace_tenancy::{OrgId, OrganizationRepository as _};
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::SeaOrganizations;
use jwks::{KeyCache, KeyFamily};

pub use jwks::OidcStatus;

/// Longest bearer token looked at, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest `kid` accepted.
const MAX_KID_LEN: usize = 128;
/// How long an organization's existence is remembered.
const ORG_CACHE_TTL: Duration = Duration::from_secs(60);
const ORG_CACHE_MAX: usize = 10_000;

/// How to reach and trust the issuer.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The issuer URL exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// How to read claims.
    pub rules: ClaimRules,
    /// Keys are refreshed after this age.
    pub jwks_ttl: Duration,
    /// At most one refresh per this interval (unknown `kid`s included).
    pub min_refresh_interval: Duration,
    /// Cached keys keep working this long after the last successful fetch.
    pub max_stale: Duration,
    /// Time allowed for each HTTP request to the issuer.
    pub http_timeout: Duration,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl OidcSettings {
    /// Settings with defaults: 10 min TTL, 30 s between refreshes, 24 h
    /// stale limit, 5 s HTTP timeout, 60 s leeway.
    pub fn new(issuer: String, rules: ClaimRules) -> Self {
        Self {
            issuer,
            rules,
            jwks_ttl: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(24 * 3600),
            http_timeout: Duration::from_secs(5),
            leeway_secs: 60,
        }
    }
}

/// Verifies issuer access tokens.
pub struct OidcVerifier {
    settings: OidcSettings,
    keys: KeyCache,
    orgs: SeaOrganizations,
    known_orgs: Mutex<HashMap<OrgId, Instant>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// A verifier for `settings`; organizations in tokens are checked against `orgs`.
    pub fn new(settings: OidcSettings, orgs: SeaOrganizations) -> Result<Self, reqwest::Error> {
        crate::jwt_crypto::install();
        let keys = KeyCache::new(&settings)?;
        Ok(Self {
            settings,
            keys,
            orgs,
            known_orgs: Mutex::new(HashMap::new()),
        })
    }

    /// Fetches the keys once (at start-up); failures are logged, not fatal.
    pub async fn warm(&self) {
        self.keys.refresh(true).await;
    }

    /// With no usable keys, fetches them again (at most every 2 s):
    /// readiness calls this, so an instance recovers from an issuer outage
    /// even when, being not ready, it gets no traffic.
    pub async fn recover(&self) {
        self.keys.recover().await;
    }

    /// The key cache's state, for readiness.
    pub fn status(&self) -> OidcStatus {
        self.keys.status()
    }

    /// Verifies `token` completely and returns its principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken("token too long"));
        }
        let header =
            decode_header(token).map_err(|_| AuthError::InvalidToken("malformed token"))?;
        let family = match header.alg {
            Algorithm::RS256 | Algorithm::PS256 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::Ec,
            _ => {
                return Err(AuthError::InvalidToken(
                    "algorithm not allowed for issuer tokens",
                ));
            }
        };
        let kid = header
            .kid
            .as_deref()
            .ok_or(AuthError::InvalidToken("no kid"))?;
        if kid.is_empty() || kid.len() > MAX_KID_LEN {
            return Err(AuthError::InvalidToken("bad kid"));
        }
        let key = self.keys.key(kid, family).await?;

        let rules = &self.settings.rules;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway_secs;
        match rules.flavor {
            IssuerFlavor::Standard => {
                validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
                validation.set_audience(&[&rules.audience]);
            }
            // Cognito access tokens carry `client_id` instead of `aud`;
            // check_registered_claims requires it.
            IssuerFlavor::Cognito => {
                validation.set_required_spec_claims(&["exp", "iss", "sub"]);
                validation.validate_aud = false;
            }
        }
        let data = decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|_| AuthError::InvalidToken("signature or registered claims rejected"))?;
        // The library is lenient where the specification is not (an `iss`
        // array, a `null` nbf): every registered claim is checked again,
        // strictly, by the pure rule.
        check_registered_claims(
            &data.claims,
            &RegisteredClaims {
                issuer: &self.settings.issuer,
                audience: &rules.audience,
                flavor: rules.flavor,
                now: jsonwebtoken::get_current_timestamp(),
                leeway: self.settings.leeway_secs,
            },
        )?;
        let claims = read_issuer_claims(&data.claims, rules)?;
        self.ensure_org_exists(claims.org).await?;
        Ok(Principal::new(claims.subject, claims.org, claims.roles)
            .with_mfa(claims.mfa)
            .with_scopes(claims.scopes))
    }

    async fn ensure_org_exists(&self, org: OrgId) -> Result<(), AuthError> {
        let now = Instant::now();
        if let Ok(known) = self.known_orgs.lock()
            && known
                .get(&org)
                .is_some_and(|seen| now.duration_since(*seen) < ORG_CACHE_TTL)
        {
            return Ok(());
        }
        let found = self.orgs.find_by_id(org).await.map_err(|e| {
            tracing::error!(error = %e, "organization lookup failed during token verification");
            match e {
                // The database is out: 503 storage_unavailable, like any
                // other request that needs it.
                carapace_tenancy::TenancyError::Storage(
                    s @ carapace_tenancy::StorageError::Unavailable(_),
                ) => AuthError::Storage(s),
                _ => AuthError::Unavailable,
            }
        })?;
        if found.is_none() {
            return Err(AuthError::InvalidToken("organization unknown to Carapace"));
        }
        if let Ok(mut known) = self.known_orgs.lock() {
            if known.len() >= ORG_CACHE_MAX {
                known.clear();
            }
            known.insert(org, now);
        }
        Ok(())
    }
}
