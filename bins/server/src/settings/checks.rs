//! The rules settings must satisfy. General rules apply to every profile;
//! [`PRODUCTION_CHECKS`] is the table of production refusals from the
//! contract, which later features extend with their own rows.

use std::fmt;

use carapace_infra::db::Backend;
use secrecy::{ExposeSecret, SecretString};

use super::Settings;

/// Shortest secret accepted anywhere, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// One problem, naming the variable to change and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable concerned.
    pub key: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigProblem {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A production refusal: a name and a rule that returns a problem when the
/// settings break it.
pub struct ProductionCheck {
    /// Short name of the rule.
    pub name: &'static str,
    /// The rule.
    pub check: fn(&Settings) -> Option<ConfigProblem>,
}

/// Every production refusal, in the order they are reported.
pub const PRODUCTION_CHECKS: &[ProductionCheck] = &[
    ProductionCheck {
        name: "cors exact https origins",
        check: |s| {
            let bad: Vec<String> = s
                .cors_origins()
                .into_iter()
                .filter(|o| !o.starts_with("https://"))
                .collect();
            (!bad.is_empty()).then(|| {
                ConfigProblem::new(
                    "CARAPACE_CORS_ORIGINS",
                    format!(
                        "production allows only exact https origins, not {}",
                        bad.join(", ")
                    ),
                )
            })
        },
    },
    ProductionCheck {
        name: "no dev tokens",
        check: |s| {
            s.dev_tokens_enabled().then(|| {
                ConfigProblem::new(
                    "CARAPACE_DEV_TOKENS",
                    "dev tokens are enabled; production refuses them: set CARAPACE_DEV_TOKENS=false",
                )
            })
        },
    },
    ProductionCheck {
        name: "postgresql",
        check: |s| {
            (s.backend() == Some(Backend::Sqlite)).then(|| {
                ConfigProblem::new(
                    "CARAPACE_DATABASE_URL",
                    "is SQLite; production needs PostgreSQL: set a postgres:// URL for the carapace_app role",
                )
            })
        },
    },
    ProductionCheck {
        name: "database tls",
        check: |s| {
            (s.backend() == Some(Backend::Postgres)
                && !s.database_tls.is_encrypted()
                && !s.database_allow_insecure)
                .then(|| {
                    ConfigProblem::new(
                        "CARAPACE_DATABASE_TLS",
                        "PostgreSQL without TLS: set require, verify-ca or verify-full (or CARAPACE_DATABASE_ALLOW_INSECURE=true on a trusted private network)",
                    )
                })
        },
    },
    ProductionCheck {
        name: "cursor secret",
        check: |s| {
            s.cursor_secret.is_none().then(|| {
                ConfigProblem::new(
                    "CARAPACE_CURSOR_SECRET",
                    "not set; production needs a random secret of at least 32 bytes, the same on every instance",
                )
            })
        },
    },
    ProductionCheck {
        name: "authentication configured",
        check: |s| {
            (s.oidc_issuer.is_none() && s.signing_key_file.is_none()).then(|| {
                ConfigProblem::new(
                    "CARAPACE_OIDC_ISSUER",
                    "no authentication configured: set CARAPACE_OIDC_ISSUER and CARAPACE_OIDC_AUDIENCE, or CARAPACE_SIGNING_KEY_FILE for local accounts",
                )
            })
        },
    },
    ProductionCheck {
        name: "mail for password reset",
        check: |s| {
            let secure = s.smtp_url.as_ref().is_some_and(|u| {
                let u = u.expose_secret();
                u.starts_with("smtps://") || u.contains("tls=required")
            });
            (s.local_accounts_enabled() && !secure).then(|| {
                ConfigProblem::new(
                    "CARAPACE_SMTP_URL",
                    "local accounts need TLS mail for password reset: set smtps://… or smtp://…?tls=required",
                )
            })
        },
    },
    ProductionCheck {
        name: "key provider for secrets at rest",
        check: |s| {
            (s.master_key_file.is_none() && s.kms_key_id.is_none()).then(|| {
                ConfigProblem::new(
                    "CARAPACE_MASTER_KEY_FILE",
                    "PHI is encrypted under a key-encryption key: set CARAPACE_KMS_KEY_ID, or point this at a file of 64 hex characters (`carapace keys init`)",
                )
            })
        },
    },
    ProductionCheck {
        name: "audit checkpoint signing key",
        check: |s| {
            s.audit_signing_key_file.is_none().then(|| {
                ConfigProblem::new(
                    "CARAPACE_AUDIT_SIGNING_KEY_FILE",
                    "audit checkpoints are signed: point this at an Ed25519 PKCS#8 PEM key (openssl genpkey -algorithm ed25519)",
                )
            })
        },
    },
    ProductionCheck {
        name: "audit witness outside the database",
        check: |s| {
            (s.audit_witness_url.is_none() && !s.audit_witness_waived).then(|| {
                ConfigProblem::new(
                    "CARAPACE_AUDIT_WITNESS_URL",
                    "audit checkpoints are anchored outside the database in production: set s3://bucket/prefix (a bucket created with Object Lock), or CARAPACE_AUDIT_WITNESS_WAIVED=true to accept that a database superuser can cut the newest events unseen",
                )
            })
        },
    },
    ProductionCheck {
        name: "audit witness over https, never loopback",
        check: |s| {
            let http = s
                .audit_witness_endpoint_url()
                .is_some_and(|u| u.scheme() != "https");
            (s.audit_witness_url.is_some() && (http || s.audit_witness_allow_loopback)).then(|| {
                ConfigProblem::new(
                    "CARAPACE_AUDIT_WITNESS_ENDPOINT",
                    "the witness is reached over https in production (no loopback stand-in)",
                )
            })
        },
    },
    ProductionCheck {
        name: "alert webhook over https, never to loopback",
        check: |s| {
            let http = s
                .alert_webhook_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"));
            (http || s.alert_webhook_allow_loopback).then(|| {
                ConfigProblem::new(
                    "CARAPACE_ALERT_WEBHOOK_URL",
                    "alerts go over https to a public receiver in production (no loopback)",
                )
            })
        },
    },
    ProductionCheck {
        name: "AI only with a signed BAA, never the local provider, https, no loopback",
        check: |s| {
            if s.ai_provider == "none" {
                None
            } else if !s.ai_baa_signed {
                Some(ConfigProblem::new(
                    "CARAPACE_AI_BAA_SIGNED",
                    "an AI provider is set but no business associate agreement is declared; production refuses AI without one",
                ))
            } else if s.ai_provider == "local" {
                Some(ConfigProblem::new(
                    "CARAPACE_AI_PROVIDER",
                    "the local provider is for development; production needs openai or none",
                ))
            } else if s.ai_allow_loopback
                || s.ai_url
                    .as_deref()
                    .is_some_and(|u| !u.starts_with("https://"))
            {
                Some(ConfigProblem::new(
                    "CARAPACE_AI_URL",
                    "the AI provider is reached over https, never on loopback, in production",
                ))
            } else {
                None
            }
        },
    },
    ProductionCheck {
        name: "SMS over https, never to loopback",
        check: |s| {
            let http = s
                .sms_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"));
            (http || s.sms_allow_loopback).then(|| {
                ConfigProblem::new(
                    "CARAPACE_SMS_URL",
                    "SMS goes over https to a public API in production (no loopback)",
                )
            })
        },
    },
    ProductionCheck {
        name: "key provider over https",
        check: |s| {
            (s.kms_key_id.is_some() && s.kms_endpoint_url().is_some_and(|u| u.scheme() != "https"))
                .then(|| ConfigProblem::new("CARAPACE_KMS_ENDPOINT", "must be https in production"))
        },
    },
    ProductionCheck {
        name: "issuer over https",
        check: |s| {
            s.oidc_issuer
                .as_deref()
                .is_some_and(|i| !i.starts_with("https://"))
                .then(|| {
                    ConfigProblem::new(
                        "CARAPACE_OIDC_ISSUER",
                        "must be an https:// URL in production",
                    )
                })
        },
    },
];

/// Rules for every profile: shapes, ranges and secret lengths.
/// Whether `s` is exactly an origin: `http(s)://host[:port]`, nothing more.
fn is_origin(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
            && !s.contains('*')
            && u.origin().ascii_serialization() == s
    })
}

pub(super) fn general(s: &Settings) -> Vec<ConfigProblem> {
    let mut p = Vec::new();
    if s.bind.parse::<std::net::SocketAddr>().is_err() {
        p.push(ConfigProblem::new(
            "CARAPACE_BIND",
            format!("{:?} is not an address like 127.0.0.1:8080", s.bind),
        ));
    }
    let url = s.database_url.expose_secret();
    match s.backend() {
        None => p.push(ConfigProblem::new(
            "CARAPACE_DATABASE_URL",
            "must start with postgres:// (or postgresql://) or sqlite://",
        )),
        Some(Backend::Postgres) if url.contains("sslmode=") => p.push(ConfigProblem::new(
            "CARAPACE_DATABASE_URL",
            "carries sslmode; set the TLS mode with CARAPACE_DATABASE_TLS instead",
        )),
        _ => {}
    }
    if let Some(owner) = &s.database_owner_url
        && Backend::of_url(owner.expose_secret()) != s.backend()
    {
        p.push(ConfigProblem::new(
            "CARAPACE_DATABASE_OWNER_URL",
            "must point at the same kind of database as CARAPACE_DATABASE_URL",
        ));
    }
    if !(5..=1440).contains(&s.appointment_max_minutes) {
        p.push(ConfigProblem::new(
            "CARAPACE_APPOINTMENT_MAX_MINUTES",
            "must be between 5 and 1440",
        ));
    }
    if s.reminder_offset_list().is_none() {
        p.push(ConfigProblem::new(
            "CARAPACE_REMINDER_OFFSETS",
            "must be up to 5 comma-separated offsets like 24h or 30m",
        ));
    }
    let sms_parts = [
        s.sms_url.is_some(),
        s.sms_account_sid.is_some(),
        s.sms_auth_token.is_some(),
        s.sms_from.is_some(),
    ];
    if sms_parts.iter().any(|x| *x) && s.sms().is_none() {
        p.push(ConfigProblem::new(
            "CARAPACE_SMS_URL",
            "SMS needs CARAPACE_SMS_URL (a URL), CARAPACE_SMS_ACCOUNT_SID, CARAPACE_SMS_AUTH_TOKEN and CARAPACE_SMS_FROM together",
        ));
    }
    match s.ai_provider.as_str() {
        "none" | "local" => {}
        "openai" if s.openai().is_some() => {}
        "openai" => p.push(ConfigProblem::new(
            "CARAPACE_AI_URL",
            "the openai provider needs CARAPACE_AI_URL (a URL) and CARAPACE_AI_API_KEY",
        )),
        _ => p.push(ConfigProblem::new(
            "CARAPACE_AI_PROVIDER",
            "must be none, local or openai",
        )),
    }
    for origin in s.cors_origins() {
        if !is_origin(&origin) {
            p.push(ConfigProblem::new(
                "CARAPACE_CORS_ORIGINS",
                format!("{origin:?} is not an origin like https://app.example.org (scheme, host, optional port; no path)"),
            ));
        }
    }
    if let Some(endpoint) = &s.otel_endpoint {
        if !cfg!(feature = "otel") {
            p.push(ConfigProblem::new(
                "CARAPACE_OTEL_ENDPOINT",
                "this binary is built without trace export: rebuild with --features otel, or unset it",
            ));
        } else if !url::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            p.push(ConfigProblem::new(
                "CARAPACE_OTEL_ENDPOINT",
                "must be an http(s) URL like http://collector:4318",
            ));
        }
    }
    if let Err(e) = carapace_auth::rate_limit::TrustedProxies::parse(&s.trusted_proxies) {
        p.push(ConfigProblem::new(
            "CARAPACE_TRUSTED_PROXIES",
            e.to_string(),
        ));
    }
    for (key, value) in [
        (
            "CARAPACE_RATE_LIMIT_AUTH_PER_MINUTE",
            s.rate_limit_auth_per_minute,
        ),
        ("CARAPACE_RATE_LIMIT_AUTH_BURST", s.rate_limit_auth_burst),
        (
            "CARAPACE_RATE_LIMIT_AI_PER_MINUTE",
            s.rate_limit_ai_per_minute,
        ),
        ("CARAPACE_RATE_LIMIT_AI_BURST", s.rate_limit_ai_burst),
        (
            "CARAPACE_RATE_LIMIT_API_PER_MINUTE",
            s.rate_limit_api_per_minute,
        ),
        ("CARAPACE_RATE_LIMIT_API_BURST", s.rate_limit_api_burst),
    ] {
        if !(1..=10_000_000).contains(&value) {
            p.push(ConfigProblem::new(key, "must be between 1 and 10000000"));
        }
    }
    if let Some(url) = &s.redis_url
        && !(url.expose_secret().starts_with("redis://")
            || url.expose_secret().starts_with("rediss://"))
    {
        p.push(ConfigProblem::new(
            "CARAPACE_REDIS_URL",
            "must start with redis:// or rediss://",
        ));
    }
    if !(1..=1000).contains(&s.database_pool_max) {
        p.push(ConfigProblem::new(
            "CARAPACE_DATABASE_POOL_MAX",
            "must be between 1 and 1000",
        ));
    }
    for (key, secs) in [
        (
            "CARAPACE_DATABASE_CONNECT_TIMEOUT_SECS",
            s.database_connect_timeout_secs,
        ),
        (
            "CARAPACE_DATABASE_ACQUIRE_TIMEOUT_SECS",
            s.database_acquire_timeout_secs,
        ),
        (
            "CARAPACE_DATABASE_STATEMENT_TIMEOUT_SECS",
            s.database_statement_timeout_secs,
        ),
        ("CARAPACE_SHUTDOWN_TIMEOUT_SECS", s.shutdown_timeout_secs),
    ] {
        if !(1..=3600).contains(&secs) {
            p.push(ConfigProblem::new(
                key,
                "must be between 1 and 3600 seconds",
            ));
        }
    }
    if s.refresh_grace_secs > 60 {
        p.push(ConfigProblem::new(
            "CARAPACE_REFRESH_GRACE_SECS",
            "must be between 0 and 60 seconds",
        ));
    }
    if !(1024..=16 * 1024 * 1024).contains(&s.body_limit_bytes) {
        p.push(ConfigProblem::new(
            "CARAPACE_BODY_LIMIT_BYTES",
            "must be between 1024 and 16777216",
        ));
    }
    for (key, secret) in [
        ("CARAPACE_DEV_TOKEN_SECRET", &s.dev_token_secret),
        ("CARAPACE_CURSOR_SECRET", &s.cursor_secret),
        ("CARAPACE_METRICS_TOKEN", &s.metrics_token),
    ] {
        if let Some(problem) = short_secret(key, secret.as_ref()) {
            p.push(problem);
        }
    }
    if let Some(issuer) = &s.oidc_issuer {
        let ok = url::Url::parse(issuer).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host().is_some() && issuer.len() <= 512
        });
        if !ok {
            p.push(ConfigProblem::new(
                "CARAPACE_OIDC_ISSUER",
                "must be an http(s) URL of at most 512 characters",
            ));
        }
        if s.oidc_audience.as_deref().is_none_or(str::is_empty) {
            p.push(ConfigProblem::new(
                "CARAPACE_OIDC_AUDIENCE",
                "is required with CARAPACE_OIDC_ISSUER (Cognito: the app client id)",
            ));
        }
    }
    for (key, claim) in [
        ("CARAPACE_OIDC_ORG_CLAIM", &s.oidc_org_claim),
        ("CARAPACE_OIDC_ROLES_CLAIM", &s.oidc_roles_claim),
    ] {
        if claim
            .as_deref()
            .is_some_and(|c| c.is_empty() || c.len() > 128)
        {
            p.push(ConfigProblem::new(key, "must be 1 to 128 characters"));
        }
    }
    if let Some(base) = &s.base_domain {
        let ok = base.len() <= 200
            && base.split('.').count() >= 2
            && base.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            p.push(ConfigProblem::new(
                "CARAPACE_BASE_DOMAIN",
                "must be a domain like clinics.example.org",
            ));
        }
    }
    if let Some(url) = &s.smtp_url {
        let u = url.expose_secret();
        if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
            p.push(ConfigProblem::new(
                "CARAPACE_SMTP_URL",
                "must start with smtp:// or smtps://",
            ));
        }
    }
    if s.mail_from.parse::<lettre::message::Mailbox>().is_err() {
        p.push(ConfigProblem::new(
            "CARAPACE_MAIL_FROM",
            "must be an address like Carapace <no-reply@example.org>",
        ));
    }
    if s.kms_key_id.is_some() {
        kms_problems(s, &mut p);
    }
    if let Some(url) = &s.alert_webhook_url {
        let ok = url::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            && url.len() <= 2048;
        if !ok {
            p.push(ConfigProblem::new(
                "CARAPACE_ALERT_WEBHOOK_URL",
                "must be an http(s) URL of at most 2048 characters",
            ));
        }
        match &s.alert_webhook_secret {
            None => p.push(ConfigProblem::new(
                "CARAPACE_ALERT_WEBHOOK_SECRET",
                "is required with CARAPACE_ALERT_WEBHOOK_URL (alerts are HMAC-signed)",
            )),
            Some(secret) => {
                if let Some(problem) = short_secret("CARAPACE_ALERT_WEBHOOK_SECRET", Some(secret)) {
                    p.push(problem);
                }
            }
        }
    }
    witness_problems(s, &mut p);
    if !(1..=36_500).contains(&s.audit_retention_days) {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_RETENTION_DAYS",
            "must be between 1 and 36500 days",
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(&s.log_level).is_err() {
        p.push(ConfigProblem::new(
            "CARAPACE_LOG_LEVEL",
            "is not a valid filter (e.g. info or carapace=debug,info)",
        ));
    }
    p
}

fn witness_problems(s: &Settings, p: &mut Vec<ConfigProblem>) {
    if !(1..=3600).contains(&s.audit_anchor_every_secs) {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_ANCHOR_EVERY_SECS",
            "must be between 1 and 3600 seconds",
        ));
    }
    if !(1..=86_400).contains(&s.audit_witness_max_backlog_secs) {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_MAX_BACKLOG_SECS",
            "must be between 1 and 86400 seconds",
        ));
    }
    if s.audit_witness_url.is_none() {
        return;
    }
    if !cfg!(feature = "s3") {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_URL",
            "this build has no S3 witness (build with the `s3` feature)",
        ));
    }
    if s.audit_witness_bucket().is_none() {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_URL",
            "must be s3://bucket or s3://bucket/prefix (a valid bucket name; the prefix of letters, digits and -_./)",
        ));
    }
    let region_ok = s.audit_witness_region.as_deref().is_some_and(|r| {
        !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !region_ok {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_REGION",
            "is required with CARAPACE_AUDIT_WITNESS_URL (or AWS_REGION), e.g. eu-west-1",
        ));
    }
    match s.audit_witness_endpoint_url() {
        Some(u) if u.scheme() == "https" && u.host().is_some() => {}
        Some(u) if u.scheme() == "http" && u.host().is_some() => {
            let loopback = match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if !(loopback && s.audit_witness_allow_loopback) {
                p.push(ConfigProblem::new(
                    "CARAPACE_AUDIT_WITNESS_ENDPOINT",
                    "must be https (http only for a loopback stand-in with CARAPACE_AUDIT_WITNESS_ALLOW_LOOPBACK=true)",
                ));
            }
        }
        Some(_) => p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_ENDPOINT",
            "must be an https URL",
        )),
        None if s.audit_witness_endpoint.is_some() => p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_ENDPOINT",
            "must be an https URL",
        )),
        None => {}
    }
    if s.audit_witness_access_key_id
        .as_deref()
        .is_none_or(str::is_empty)
        || s.audit_witness_secret_access_key.is_none()
    {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID",
            "the witness needs credentials: CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID and CARAPACE_AUDIT_WITNESS_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        ));
    }
    if s.audit_witness_retention_days
        .is_some_and(|d| !(1..=36_500).contains(&d))
    {
        p.push(ConfigProblem::new(
            "CARAPACE_AUDIT_WITNESS_RETENTION_DAYS",
            "must be between 1 and 36500 days",
        ));
    }
}

fn kms_problems(s: &Settings, p: &mut Vec<ConfigProblem>) {
    if !cfg!(feature = "kms") {
        p.push(ConfigProblem::new(
            "CARAPACE_KMS_KEY_ID",
            "this build has no KMS support (build with the `kms` feature)",
        ));
    }
    if s.master_key_file.is_some() {
        p.push(ConfigProblem::new(
            "CARAPACE_MASTER_KEY_FILE",
            "set either this or CARAPACE_KMS_KEY_ID, not both",
        ));
    }
    if s.kms_key_id
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.len() > 2048)
    {
        p.push(ConfigProblem::new(
            "CARAPACE_KMS_KEY_ID",
            "must be 1 to 2048 characters",
        ));
    }
    let region_ok = s.kms_region.as_deref().is_some_and(|r| {
        !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !region_ok {
        p.push(ConfigProblem::new(
            "CARAPACE_KMS_REGION",
            "is required with CARAPACE_KMS_KEY_ID (or AWS_REGION), e.g. eu-west-1",
        ));
    }
    let endpoint_ok = s.kms_endpoint.is_none()
        || s.kms_endpoint_url()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !endpoint_ok {
        p.push(ConfigProblem::new(
            "CARAPACE_KMS_ENDPOINT",
            "must be an http(s) URL",
        ));
    }
    if s.kms_access_key_id.as_deref().is_none_or(str::is_empty) || s.kms_secret_access_key.is_none()
    {
        p.push(ConfigProblem::new(
            "CARAPACE_KMS_ACCESS_KEY_ID",
            "KMS needs credentials: CARAPACE_KMS_ACCESS_KEY_ID and CARAPACE_KMS_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        ));
    }
}

fn short_secret(key: &'static str, secret: Option<&SecretString>) -> Option<ConfigProblem> {
    let len = secret?.expose_secret().len();
    (len < MIN_SECRET_BYTES).then(|| {
        ConfigProblem::new(
            key,
            format!("is {len} bytes; secrets must be at least {MIN_SECRET_BYTES} bytes"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Profile;
    use carapace_infra::TlsMode;

    fn keys(s: &Settings) -> Vec<&'static str> {
        s.problems().iter().map(|p| p.key).collect()
    }

    #[test]
    fn dev_defaults_are_valid() {
        assert_eq!(keys(&Settings::default()), Vec::<&str>::new());
    }

    #[test]
    fn production_on_defaults_lists_each_refusal_once() {
        let s = Settings {
            profile: Profile::Production,
            dev_tokens: Some(true),
            ..Settings::default()
        };
        assert_eq!(
            keys(&s),
            vec![
                "CARAPACE_DEV_TOKENS",
                "CARAPACE_DATABASE_URL",
                "CARAPACE_CURSOR_SECRET",
                "CARAPACE_OIDC_ISSUER",
                "CARAPACE_MASTER_KEY_FILE",
                "CARAPACE_AUDIT_SIGNING_KEY_FILE",
                "CARAPACE_AUDIT_WITNESS_URL"
            ]
        );
    }

    #[test]
    fn production_refuses_ai_without_a_baa_and_the_local_provider() {
        let openai = Settings {
            ai_provider: "openai".into(),
            ai_url: Some("https://api.openai.example".into()),
            ai_api_key: Some("k".repeat(40).into()),
            ..Settings::default()
        };
        assert!(
            keys(&openai).is_empty(),
            "dev allows it (the routes stay off)"
        );
        let prod = |s: Settings| Settings {
            profile: Profile::Production,
            ..s
        };
        assert!(keys(&prod(openai.clone())).contains(&"CARAPACE_AI_BAA_SIGNED"));
        let signed = Settings {
            ai_baa_signed: true,
            ..openai.clone()
        };
        let k = keys(&prod(signed.clone()));
        assert!(!k.contains(&"CARAPACE_AI_BAA_SIGNED") && !k.contains(&"CARAPACE_AI_URL"));
        let local = Settings {
            ai_provider: "local".into(),
            ..signed.clone()
        };
        assert!(keys(&prod(local)).contains(&"CARAPACE_AI_PROVIDER"));
        let plain = Settings {
            ai_url: Some("http://api.openai.example".into()),
            ..signed
        };
        assert!(keys(&prod(plain)).contains(&"CARAPACE_AI_URL"));
        let unknown = Settings {
            ai_provider: "gpt".into(),
            ..Settings::default()
        };
        assert_eq!(keys(&unknown), vec!["CARAPACE_AI_PROVIDER"]);
        let incomplete = Settings {
            ai_provider: "openai".into(),
            ..Settings::default()
        };
        assert_eq!(keys(&incomplete), vec!["CARAPACE_AI_URL"]);
    }

    #[test]
    fn an_otel_endpoint_needs_the_feature_and_an_http_url() {
        let s = Settings {
            otel_endpoint: Some("ftp://collector".into()),
            ..Settings::default()
        };
        assert_eq!(keys(&s), vec!["CARAPACE_OTEL_ENDPOINT"]);
        let ok = Settings {
            otel_endpoint: Some("http://collector:4318".into()),
            ..Settings::default()
        };
        assert_eq!(keys(&ok).is_empty(), cfg!(feature = "otel"));
    }

    #[test]
    fn cors_takes_exact_origins_and_production_only_https_ones() {
        let dev = |origins: &str| Settings {
            cors_origins: origins.into(),
            ..Settings::default()
        };
        assert!(keys(&dev("https://app.example.org, http://localhost:5173")).is_empty());
        for bad in [
            "https://app.example.org/path",
            "app.example.org",
            "https://*.example.org",
            "*",
            "ftp://x.org",
        ] {
            assert_eq!(keys(&dev(bad)), vec!["CARAPACE_CORS_ORIGINS"], "{bad}");
        }
        let prod = |origins: &str| Settings {
            profile: Profile::Production,
            ..dev(origins)
        };
        assert!(!keys(&prod("https://app.example.org")).contains(&"CARAPACE_CORS_ORIGINS"));
        for refused in [
            "*",
            "http://app.example.org",
            "https://app.example.org, http://localhost:5173",
        ] {
            assert!(
                keys(&prod(refused)).contains(&"CARAPACE_CORS_ORIGINS"),
                "{refused}"
            );
        }
    }

    #[test]
    fn production_postgres_needs_tls_unless_allowed() {
        let pg = Settings {
            profile: Profile::Production,
            database_url: SecretString::from("postgres://carapace_app@db/carapace"),
            cursor_secret: Some(SecretString::from("c".repeat(32))),
            ..Settings::default()
        };
        assert!(keys(&pg).contains(&"CARAPACE_DATABASE_TLS"));
        let tls = Settings {
            database_tls: TlsMode::VerifyFull,
            ..pg
        };
        assert!(!keys(&tls).contains(&"CARAPACE_DATABASE_TLS"));
        let allowed = Settings {
            database_tls: TlsMode::Disable,
            database_allow_insecure: true,
            ..tls
        };
        assert!(!keys(&allowed).contains(&"CARAPACE_DATABASE_TLS"));
        assert!(
            !keys(&allowed).contains(&"CARAPACE_DEV_TOKENS"),
            "dev tokens default off in production"
        );
    }

    #[test]
    fn general_rules_apply_in_every_profile() {
        let s = Settings {
            bind: "nowhere".into(),
            database_url: SecretString::from("mysql://x"),
            database_pool_max: 0,
            body_limit_bytes: 10,
            dev_token_secret: Some(SecretString::from("short")),
            cursor_secret: Some(SecretString::from("c".repeat(31))),
            database_statement_timeout_secs: 0,
            ..Settings::default()
        };
        assert_eq!(
            keys(&s),
            vec![
                "CARAPACE_BIND",
                "CARAPACE_DATABASE_URL",
                "CARAPACE_DATABASE_POOL_MAX",
                "CARAPACE_DATABASE_STATEMENT_TIMEOUT_SECS",
                "CARAPACE_BODY_LIMIT_BYTES",
                "CARAPACE_DEV_TOKEN_SECRET",
                "CARAPACE_CURSOR_SECRET",
            ]
        );
        let shown: Vec<String> = s.problems().iter().map(ToString::to_string).collect();
        assert!(
            shown.iter().all(|l| !l.contains("short")),
            "messages never echo secrets"
        );
    }

    #[test]
    fn production_needs_an_https_issuer_with_an_audience() {
        let base = Settings {
            profile: Profile::Production,
            database_url: SecretString::from("postgres://carapace_app@db/carapace"),
            database_tls: TlsMode::Require,
            cursor_secret: Some(SecretString::from("c".repeat(32))),
            master_key_file: Some("/run/secrets/master.key".into()),
            audit_signing_key_file: Some("/run/secrets/audit.pem".into()),
            audit_witness_waived: true,
            ..Settings::default()
        };
        assert_eq!(keys(&base), vec!["CARAPACE_OIDC_ISSUER"]);
        let http = Settings {
            oidc_issuer: Some("http://idp.example".into()),
            ..base
        };
        assert_eq!(
            keys(&http),
            vec!["CARAPACE_OIDC_AUDIENCE", "CARAPACE_OIDC_ISSUER"]
        );
        let ok = Settings {
            oidc_issuer: Some("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc".into()),
            oidc_audience: Some("client-123".into()),
            ..http
        };
        assert_eq!(keys(&ok), Vec::<&str>::new());
    }

    #[test]
    fn kms_needs_a_region_and_credentials_and_excludes_the_key_file() {
        let kms = Settings {
            kms_key_id: Some("alias/carapace".into()),
            master_key_file: Some("/run/secrets/master.key".into()),
            ..Settings::default()
        };
        assert_eq!(
            keys(&kms),
            vec![
                "CARAPACE_MASTER_KEY_FILE",
                "CARAPACE_KMS_REGION",
                "CARAPACE_KMS_ACCESS_KEY_ID"
            ]
        );
        let ok = Settings {
            master_key_file: None,
            kms_region: Some("eu-west-1".into()),
            kms_access_key_id: Some("AKIDEXAMPLE".into()),
            kms_secret_access_key: Some(SecretString::from("s".repeat(40))),
            ..kms
        };
        assert_eq!(keys(&ok), Vec::<&str>::new());
        assert_eq!(
            ok.kms_endpoint_url().map(String::from).as_deref(),
            Some("https://kms.eu-west-1.amazonaws.com/")
        );
        let production = Settings {
            profile: Profile::Production,
            database_url: SecretString::from("postgres://carapace_app@db/carapace"),
            database_tls: TlsMode::Require,
            cursor_secret: Some(SecretString::from("c".repeat(32))),
            oidc_issuer: Some("https://idp.example".into()),
            oidc_audience: Some("client-123".into()),
            kms_endpoint: Some("http://127.0.0.1:4566".into()),
            audit_signing_key_file: Some("/run/secrets/audit.pem".into()),
            audit_witness_waived: true,
            ..ok
        };
        assert_eq!(keys(&production), vec!["CARAPACE_KMS_ENDPOINT"]);
    }

    #[test]
    fn the_witness_needs_a_bucket_region_and_credentials_and_https_in_production() {
        let witness = Settings {
            audit_witness_url: Some("s3://Not_A_Bucket/x".into()),
            audit_witness_endpoint: Some("http://minio.internal:9000".into()),
            audit_anchor_every_secs: 0,
            audit_witness_max_backlog_secs: 0,
            audit_witness_retention_days: Some(0),
            ..Settings::default()
        };
        assert_eq!(
            keys(&witness),
            vec![
                "CARAPACE_AUDIT_ANCHOR_EVERY_SECS",
                "CARAPACE_AUDIT_WITNESS_MAX_BACKLOG_SECS",
                "CARAPACE_AUDIT_WITNESS_URL",
                "CARAPACE_AUDIT_WITNESS_REGION",
                "CARAPACE_AUDIT_WITNESS_ENDPOINT",
                "CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID",
                "CARAPACE_AUDIT_WITNESS_RETENTION_DAYS",
            ]
        );
        let loopback = Settings {
            audit_witness_url: Some("s3://carapace-audit/prod/eu".into()),
            audit_witness_endpoint: Some("http://127.0.0.1:9000".into()),
            audit_witness_allow_loopback: true,
            audit_witness_region: Some("us-east-1".into()),
            audit_witness_access_key_id: Some("AKIDEXAMPLE".into()),
            audit_witness_secret_access_key: Some(SecretString::from("s".repeat(40))),
            ..Settings::default()
        };
        assert_eq!(keys(&loopback), Vec::<&str>::new());
        assert_eq!(
            loopback.audit_witness_bucket(),
            Some(("carapace-audit".into(), "prod/eu".into()))
        );
        for bad in [
            "s3://ab",
            "https://bucket/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
        ] {
            let s = Settings {
                audit_witness_url: Some(bad.into()),
                ..loopback.clone()
            };
            assert_eq!(keys(&s), vec!["CARAPACE_AUDIT_WITNESS_URL"], "{bad}");
        }
        let aws = Settings {
            audit_witness_endpoint: None,
            audit_witness_allow_loopback: false,
            ..loopback.clone()
        };
        assert_eq!(
            aws.audit_witness_endpoint_url()
                .map(String::from)
                .as_deref(),
            Some("https://s3.us-east-1.amazonaws.com/")
        );
        let production = |s: Settings| Settings {
            profile: Profile::Production,
            database_url: SecretString::from("postgres://carapace_app@db/carapace"),
            database_tls: TlsMode::Require,
            cursor_secret: Some(SecretString::from("c".repeat(32))),
            oidc_issuer: Some("https://idp.example".into()),
            oidc_audience: Some("client-123".into()),
            master_key_file: Some("/run/secrets/master.key".into()),
            audit_signing_key_file: Some("/run/secrets/audit.pem".into()),
            ..s
        };
        assert_eq!(keys(&production(aws.clone())), Vec::<&str>::new());
        assert_eq!(
            keys(&production(loopback)),
            vec!["CARAPACE_AUDIT_WITNESS_ENDPOINT"]
        );
        let none = Settings {
            audit_witness_url: None,
            ..aws
        };
        assert_eq!(
            keys(&production(none.clone())),
            vec!["CARAPACE_AUDIT_WITNESS_URL"]
        );
        let waived = Settings {
            audit_witness_waived: true,
            ..none
        };
        assert_eq!(keys(&production(waived.clone())), Vec::<&str>::new());
        let shown = waived.redacted().to_string();
        assert!(shown.contains("waived: a database superuser can cut the newest events unseen"));
    }

    #[test]
    fn every_production_check_has_a_name() {
        assert!(PRODUCTION_CHECKS.iter().all(|c| !c.name.is_empty()));
    }
}
