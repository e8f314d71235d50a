//! Settings: loaded once (defaults < optional `carapace.toml` < `CARAPACE_*`
//! environment), validated once with every problem reported, then passed
//! down by reference. Nothing here runs at import time.

mod checks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use carapace_auth::issuer::{ClaimRules, IssuerFlavor};
use carapace_infra::db::Backend;
use carapace_infra::oidc::OidcSettings;
use carapace_infra::{DbSettings, TlsMode};
use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use checks::{ConfigProblem, PRODUCTION_CHECKS};

/// Environment variables that belong to the test harness, not the server.
const HARNESS_VARS: &[&str] = &[
    "require_services",
    "test_pg_url",
    "test_redis_url",
    "test_moto_server",
];

/// Which rules apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local development: SQLite and dev tokens allowed.
    #[default]
    Dev,
    /// Production: the refusals of the contract apply.
    Production,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (default).
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Every setting. Each key is also `CARAPACE_<KEY>` in the environment and
/// `<key> = …` in `carapace.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `dev` or `production`.
    pub profile: Profile,
    /// Listen address.
    pub bind: String,
    /// The server's database URL (on PostgreSQL: the non-owner app role).
    pub database_url: SecretString,
    /// The schema owner's URL, for `carapace migrate` and migrate-on-start.
    pub database_owner_url: Option<SecretString>,
    /// Largest connection pool.
    pub database_pool_max: u32,
    /// Seconds allowed to open a connection.
    pub database_connect_timeout_secs: u64,
    /// Seconds a request may wait for a pooled connection.
    pub database_acquire_timeout_secs: u64,
    /// Seconds one statement may run (PostgreSQL).
    pub database_statement_timeout_secs: u64,
    /// Transactions shared by audited calls at once (group commit); 0:
    /// twice the CPUs.
    pub database_group_workers: u32,
    /// TLS to PostgreSQL: disable, prefer, require, verify-ca, verify-full.
    pub database_tls: TlsMode,
    /// Allow production on PostgreSQL without TLS (trusted private network).
    pub database_allow_insecure: bool,
    /// Accept dev tokens; default: on in `dev`, off in `production`.
    pub dev_tokens: Option<bool>,
    /// HS256 secret for dev tokens (32+ bytes); in `dev` a random one is
    /// kept in `<data_dir>/dev-token-secret` when unset.
    pub dev_token_secret: Option<SecretString>,
    /// Key for pagination cursors (32+ bytes, the same on every instance);
    /// random per process when unset in `dev`.
    pub cursor_secret: Option<SecretString>,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Where local state lives (SQLite file, dev secrets).
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log_level: String,
    /// PKCS#8 PEM Ed25519 key that signs Carapace's own access tokens
    /// (local accounts). In `dev`, generated into
    /// `<data_dir>/signing-key.pem` when unset.
    pub signing_key_file: Option<PathBuf>,
    /// Earlier signing keys (comma-separated files), still accepted for
    /// verification after a rotation.
    pub signing_key_previous_files: Option<String>,
    /// Local key-encryption key (64 hex characters) that seals secrets at
    /// rest (TOTP seeds). In `dev`, generated into `<data_dir>/master.key`
    /// when unset.
    pub master_key_file: Option<PathBuf>,
    /// PKCS#8 PEM Ed25519 key signing audit checkpoints. In `dev`,
    /// generated into `<data_dir>/audit-signing-key.pem` when unset.
    pub audit_signing_key_file: Option<PathBuf>,
    /// How long audit events are kept before `audit purge` may remove
    /// them (days; HIPAA's six years by default).
    pub audit_retention_days: u32,
    /// Seconds between signed checkpoints of an organization's chain, and
    /// so between anchors in the witness: the longest stretch of newest
    /// events a database superuser could cut unseen while the witness
    /// answers.
    pub audit_anchor_every_secs: u64,
    /// The witness outside the database that every signed checkpoint is
    /// also written to: `s3://bucket/prefix`, a bucket created with Object
    /// Lock enabled. Needs the `s3` feature (on by default).
    pub audit_witness_url: Option<String>,
    /// The witness's S3 endpoint; default `https://s3.<region>.amazonaws.com`
    /// (virtual-hosted buckets). A configured endpoint is addressed
    /// path-style (`<endpoint>/<bucket>/<key>`: MinIO and others).
    pub audit_witness_endpoint: Option<String>,
    /// Signing region of the witness; default `AWS_REGION`.
    pub audit_witness_region: Option<String>,
    /// Witness credentials (needing only `s3:PutObject`,
    /// `s3:PutObjectRetention`, `s3:GetObject`, `s3:GetObjectVersion` and
    /// `s3:ListBucketVersions`; no delete); default `AWS_ACCESS_KEY_ID`.
    pub audit_witness_access_key_id: Option<String>,
    /// Default `AWS_SECRET_ACCESS_KEY`.
    pub audit_witness_secret_access_key: Option<SecretString>,
    /// Default `AWS_SESSION_TOKEN`.
    pub audit_witness_session_token: Option<SecretString>,
    /// Days each witness object is locked in compliance mode; default
    /// `audit_retention_days`.
    pub audit_witness_retention_days: Option<u32>,
    /// Seconds a checkpoint may wait for an unreachable witness before
    /// readiness fails and PHI routes answer 503 (fail closed).
    pub audit_witness_max_backlog_secs: u64,
    /// Let the witness be an `http://` loopback stand-in (tests; refused
    /// in production).
    pub audit_witness_allow_loopback: bool,
    /// Production without a witness: the operator accepts that a database
    /// superuser can cut the newest events, with their checkpoints, unseen.
    pub audit_witness_waived: bool,
    /// Where alerts (failed-login bursts, cross-tenant attempts,
    /// break-glass, refresh-token reuse) are POSTed, HMAC-signed.
    pub alert_webhook_url: Option<String>,
    /// The HMAC key shared with the alert receiver (at least 32 bytes).
    pub alert_webhook_secret: Option<SecretString>,
    /// Hosts alerts may be sent to (comma-separated); default the webhook
    /// URL's host.
    pub alert_webhook_allowed_hosts: Option<String>,
    /// Let alerts go to a loopback address (tests; refused in production).
    pub alert_webhook_allow_loopback: bool,
    /// KMS key (id, ARN or alias) that wraps the data keys instead of the
    /// local key file. Needs the `kms` feature (on by default).
    pub kms_key_id: Option<String>,
    /// KMS signing region (`eu-west-1`).
    pub kms_region: Option<String>,
    /// KMS endpoint; default `https://kms.<region>.amazonaws.com`.
    pub kms_endpoint: Option<String>,
    /// KMS credentials; default `AWS_ACCESS_KEY_ID`.
    pub kms_access_key_id: Option<String>,
    /// Default `AWS_SECRET_ACCESS_KEY`.
    pub kms_secret_access_key: Option<SecretString>,
    /// Default `AWS_SESSION_TOKEN`.
    pub kms_session_token: Option<SecretString>,
    /// SMTP server for password-reset mail (`smtps://user:pass@host:465`
    /// or `smtp://host:587?tls=required`). In `dev`, unset means mail is
    /// written to `<data_dir>/outbox/`.
    pub smtp_url: Option<SecretString>,
    /// Sender of Carapace's mail.
    pub mail_from: String,
    /// Base domain of per-organization hosts (`<slug>.<base_domain>`): when
    /// set, a request to such a host must carry a credential of that org.
    pub base_domain: Option<String>,
    /// OIDC issuer URL (exactly as in the tokens' `iss`); discovery and
    /// JWKS are fetched from it.
    pub oidc_issuer: Option<String>,
    /// Required `aud` (Cognito: the app client id in `client_id`).
    pub oidc_audience: Option<String>,
    /// `generic` or `cognito` (access tokens with `token_use`/`client_id`).
    pub oidc_provider: OidcProvider,
    /// Claim with the org id; default `org_id` (Cognito: `custom:org_id`).
    pub oidc_org_claim: Option<String>,
    /// Claim with the roles; default `roles` (Cognito: `cognito:groups`).
    pub oidc_roles_claim: Option<String>,
    /// OTLP/HTTP collector (`http(s)://host:4318`) to export traces to;
    /// needs the `otel` feature. Unset: no export.
    pub otel_endpoint: Option<String>,
    /// Field names (comma-separated) redacted from every JSON log line, on
    /// top of the built-in list (passwords, tokens, PHI field names).
    pub log_redact_keys: String,
    /// Bearer token that `GET /metrics` requires (at least 32 bytes);
    /// unset: no metrics route.
    pub metrics_token: Option<SecretString>,
    /// Requests slower than this many milliseconds are logged as warnings.
    pub slow_request_ms: u64,
    /// Seconds in which a spent refresh token presented again (two tabs
    /// refreshing at once) gets the same successor instead of ending the
    /// session (0-60).
    pub refresh_grace_secs: u64,
    /// Slug of the organization whose MFA administrators may operate the
    /// deployment through the API (the kill switch); unset: only the CLI.
    pub operator_org: Option<String>,
    /// Longest appointment, in minutes (5-1440).
    pub appointment_max_minutes: u32,
    /// When reminders go out before an appointment: comma-separated
    /// offsets like `24h,2h` or `30m` (at most 5).
    pub reminder_offsets: String,
    /// Base URL of the Twilio-compatible SMS API
    /// (`https://api.twilio.com`); unset: no SMS reminders.
    pub sms_url: Option<String>,
    /// SMS account SID.
    pub sms_account_sid: Option<String>,
    /// SMS auth token.
    pub sms_auth_token: Option<SecretString>,
    /// SMS sender number.
    pub sms_from: Option<String>,
    /// Let SMS go to a loopback address (tests; refused in production).
    pub sms_allow_loopback: bool,
    /// The AI provider: `none` (default: the assistant is off), `local`
    /// (deterministic, development only) or `openai` (an
    /// OpenAI-compatible chat-completions API).
    pub ai_provider: String,
    /// The operator's declaration that a business associate agreement
    /// with the AI provider is signed. Without it the assistant answers
    /// 503, and production refuses to start with a provider set.
    pub ai_baa_signed: bool,
    /// Base URL of the chat-completions API (`https://api.openai.com`).
    pub ai_url: Option<String>,
    /// API key of the chat-completions API.
    pub ai_api_key: Option<SecretString>,
    /// Model name.
    pub ai_model: String,
    /// Let the AI provider be a loopback address (tests; refused in
    /// production).
    pub ai_allow_loopback: bool,
    /// Browser origins allowed to call the API (comma-separated exact
    /// `scheme://host[:port]`); empty: none.
    pub cors_origins: String,
    /// Redis (`redis://…`) holding rate-limit counters shared by every
    /// instance; unset: each instance counts in its own memory.
    pub redis_url: Option<SecretString>,
    /// Proxies (addresses or CIDR networks, comma-separated) whose
    /// `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: String,
    /// Login, MFA verify, refresh and reset requests per client address per
    /// minute, sustained.
    pub rate_limit_auth_per_minute: u32,
    /// Burst allowed on top for the same routes.
    pub rate_limit_auth_burst: u32,
    /// AI requests per principal per minute.
    pub rate_limit_ai_per_minute: u32,
    /// Burst for AI requests.
    pub rate_limit_ai_burst: u32,
    /// Other API requests per principal per minute.
    pub rate_limit_api_per_minute: u32,
    /// Burst for other API requests.
    pub rate_limit_api_burst: u32,
}

/// Which conventions the OIDC issuer follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OidcProvider {
    /// Standard access tokens with `aud`.
    #[default]
    Generic,
    /// AWS Cognito user pools.
    Cognito,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            profile: Profile::Dev,
            bind: "127.0.0.1:8080".into(),
            database_url: SecretString::from("sqlite://./data/carapace.db"),
            database_owner_url: None,
            database_pool_max: 10,
            database_connect_timeout_secs: 5,
            database_acquire_timeout_secs: 5,
            database_statement_timeout_secs: 15,
            database_group_workers: 0,
            database_tls: TlsMode::Prefer,
            database_allow_insecure: false,
            dev_tokens: None,
            dev_token_secret: None,
            cursor_secret: None,
            body_limit_bytes: 64 * 1024,
            shutdown_timeout_secs: 20,
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Json,
            log_level: "info".into(),
            signing_key_file: None,
            master_key_file: None,
            audit_signing_key_file: None,
            audit_retention_days: 6 * 365,
            audit_anchor_every_secs: 60,
            audit_witness_url: None,
            audit_witness_endpoint: None,
            audit_witness_region: None,
            audit_witness_access_key_id: None,
            audit_witness_secret_access_key: None,
            audit_witness_session_token: None,
            audit_witness_retention_days: None,
            audit_witness_max_backlog_secs: 300,
            audit_witness_allow_loopback: false,
            audit_witness_waived: false,
            alert_webhook_url: None,
            alert_webhook_secret: None,
            alert_webhook_allowed_hosts: None,
            alert_webhook_allow_loopback: false,
            kms_key_id: None,
            kms_region: None,
            kms_endpoint: None,
            kms_access_key_id: None,
            kms_secret_access_key: None,
            kms_session_token: None,
            smtp_url: None,
            mail_from: "Carapace <no-reply@carapace.invalid>".into(),
            signing_key_previous_files: None,
            base_domain: None,
            oidc_issuer: None,
            oidc_audience: None,
            oidc_provider: OidcProvider::Generic,
            oidc_org_claim: None,
            oidc_roles_claim: None,
            cors_origins: String::new(),
            operator_org: None,
            appointment_max_minutes: 480,
            reminder_offsets: "24h,2h".into(),
            sms_url: None,
            sms_account_sid: None,
            sms_auth_token: None,
            sms_from: None,
            sms_allow_loopback: false,
            ai_provider: "none".into(),
            ai_baa_signed: false,
            ai_url: None,
            ai_api_key: None,
            ai_model: "gpt-4o-mini".into(),
            ai_allow_loopback: false,
            metrics_token: None,
            log_redact_keys: String::new(),
            otel_endpoint: None,
            slow_request_ms: 1000,
            refresh_grace_secs: 10,
            redis_url: None,
            trusted_proxies: String::new(),
            rate_limit_auth_per_minute: 30,
            rate_limit_auth_burst: 10,
            rate_limit_ai_per_minute: 30,
            rate_limit_ai_burst: 5,
            rate_limit_api_per_minute: 1200,
            rate_limit_api_burst: 200,
        }
    }
}

impl Settings {
    /// Session lifetimes, with the configured refresh grace window.
    pub fn session_limits(&self) -> carapace_auth::local::SessionLimits {
        carapace_auth::local::SessionLimits {
            grace: time::Duration::seconds(i64::try_from(self.refresh_grace_secs).unwrap_or(10)),
            ..carapace_auth::local::SessionLimits::default()
        }
    }

    /// Loads defaults, then `file` if it exists, then `CARAPACE_*` variables.
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        let env = Env::prefixed("CARAPACE_")
            .filter(|k| {
                !HARNESS_VARS
                    .iter()
                    .any(|h| k.as_str().eq_ignore_ascii_case(h))
            })
            .lowercase(true);
        let mut settings: Self = Figment::new()
            .merge(Toml::file(file))
            .merge(env)
            .extract()
            .map_err(|e| {
                let lines: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
                anyhow::anyhow!(lines.join("\n"))
            })
            .context("reading settings")?;
        // KMS falls back on the standard AWS variables (also for `keys rotate
        // --kek-kms-key-id` while the local key file is still in use).
        let aws = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        settings.kms_region = settings
            .kms_region
            .or_else(|| aws("AWS_REGION"))
            .or_else(|| aws("AWS_DEFAULT_REGION"));
        settings.kms_access_key_id = settings
            .kms_access_key_id
            .or_else(|| aws("AWS_ACCESS_KEY_ID"));
        settings.kms_secret_access_key = settings
            .kms_secret_access_key
            .or_else(|| aws("AWS_SECRET_ACCESS_KEY").map(SecretString::from));
        settings.kms_session_token = settings
            .kms_session_token
            .or_else(|| aws("AWS_SESSION_TOKEN").map(SecretString::from));
        // So does the audit witness.
        if settings.audit_witness_url.is_some() {
            settings.audit_witness_region = settings
                .audit_witness_region
                .or_else(|| aws("AWS_REGION"))
                .or_else(|| aws("AWS_DEFAULT_REGION"));
            settings.audit_witness_access_key_id = settings
                .audit_witness_access_key_id
                .or_else(|| aws("AWS_ACCESS_KEY_ID"));
            settings.audit_witness_secret_access_key = settings
                .audit_witness_secret_access_key
                .or_else(|| aws("AWS_SECRET_ACCESS_KEY").map(SecretString::from));
            settings.audit_witness_session_token = settings
                .audit_witness_session_token
                .or_else(|| aws("AWS_SESSION_TOKEN").map(SecretString::from));
        }
        Ok(settings)
    }

    /// The outbound policy for alert webhooks.
    pub fn alert_policy(&self) -> carapace_infra::outbound::OutboundPolicy {
        let hosts = match &self.alert_webhook_allowed_hosts {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => self
                .alert_webhook_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| {
                    u.host_str()
                        .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
                })
                .into_iter()
                .collect(),
        };
        carapace_infra::outbound::OutboundPolicy {
            https_only: self.profile == Profile::Production,
            allowed_hosts: hosts,
            allow_loopback: self.alert_webhook_allow_loopback,
            timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
        }
    }

    /// The SMS adapter's settings and outbound policy, when SMS is configured.
    pub fn sms(
        &self,
    ) -> Option<(
        carapace_infra::sms::SmsSettings,
        carapace_infra::outbound::OutboundPolicy,
    )> {
        let base_url = self.sms_url.clone()?;
        let host = url::Url::parse(&base_url)
            .ok()?
            .host_str()?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        Some((
            carapace_infra::sms::SmsSettings {
                base_url,
                account_sid: self.sms_account_sid.clone()?,
                auth_token: self.sms_auth_token.clone()?,
                from: self.sms_from.clone()?,
            },
            carapace_infra::outbound::OutboundPolicy {
                https_only: self.profile == Profile::Production,
                allowed_hosts: vec![host],
                allow_loopback: self.sms_allow_loopback,
                timeout: Duration::from_secs(10),
                max_response_bytes: 64 * 1024,
            },
        ))
    }

    /// The chat-completions adapter's settings and outbound policy, when
    /// the provider is `openai` and complete.
    pub fn openai(
        &self,
    ) -> Option<(
        carapace_infra::assistant::OpenAiSettings,
        carapace_infra::outbound::OutboundPolicy,
    )> {
        if self.ai_provider != "openai" {
            return None;
        }
        let base_url = self.ai_url.clone()?;
        let host = url::Url::parse(&base_url)
            .ok()?
            .host_str()?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        Some((
            carapace_infra::assistant::OpenAiSettings {
                base_url,
                api_key: self.ai_api_key.clone()?,
                model: self.ai_model.clone(),
            },
            carapace_infra::outbound::OutboundPolicy {
                https_only: self.profile == Profile::Production,
                allowed_hosts: vec![host],
                allow_loopback: self.ai_allow_loopback,
                timeout: Duration::from_secs(60),
                max_response_bytes: 1024 * 1024,
            },
        ))
    }

    /// The reminder offsets, if [`Self::reminder_offsets`] is valid.
    pub fn reminder_offset_list(&self) -> Option<Vec<time::Duration>> {
        let mut out = Vec::new();
        for part in self.reminder_offsets.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (n, unit) = part.split_at(part.len().saturating_sub(1));
            let n: i64 = n.parse().ok().filter(|n| (1..=10_000).contains(n))?;
            out.push(match unit {
                "h" => time::Duration::hours(n),
                "m" => time::Duration::minutes(n),
                _ => return None,
            });
        }
        (out.len() <= 5).then_some(out)
    }

    /// The organization-independent booking rules.
    pub fn booking_rules(&self) -> carapace_clinical::appointment::BookingRules {
        carapace_clinical::appointment::BookingRules {
            max_length: time::Duration::minutes(self.appointment_max_minutes.into()),
            ..Default::default()
        }
    }

    /// The KMS endpoint in use: the configured one, else AWS's for the region.
    pub fn kms_endpoint_url(&self) -> Option<url::Url> {
        match (&self.kms_endpoint, &self.kms_region) {
            (Some(e), _) => url::Url::parse(e).ok(),
            (None, Some(r)) => url::Url::parse(&format!("https://kms.{r}.amazonaws.com/")).ok(),
            (None, None) => None,
        }
    }

    /// The witness's bucket and key prefix, if `audit_witness_url` is a
    /// valid `s3://bucket[/prefix]`.
    pub fn audit_witness_bucket(&self) -> Option<(String, String)> {
        s3_location(self.audit_witness_url.as_deref()?)
    }

    /// The witness's endpoint: the configured one, else AWS's for the region.
    pub fn audit_witness_endpoint_url(&self) -> Option<url::Url> {
        match (&self.audit_witness_endpoint, &self.audit_witness_region) {
            (Some(e), _) => url::Url::parse(e).ok(),
            (None, Some(r)) => url::Url::parse(&format!("https://s3.{r}.amazonaws.com/")).ok(),
            (None, None) => None,
        }
    }

    /// Every problem with these settings, general rules first, then the
    /// production table. Empty means valid.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = checks::general(self);
        if self.profile == Profile::Production {
            problems.extend(PRODUCTION_CHECKS.iter().filter_map(|c| (c.check)(self)));
        }
        problems
    }

    /// The quota of each route class.
    pub fn quotas(&self) -> carapace_infra::rate_limit::Quotas {
        use carapace_auth::rate_limit::Quota;
        carapace_infra::rate_limit::Quotas {
            authentication: Quota::new(self.rate_limit_auth_per_minute, self.rate_limit_auth_burst),
            ai: Quota::new(self.rate_limit_ai_per_minute, self.rate_limit_ai_burst),
            api: Quota::new(self.rate_limit_api_per_minute, self.rate_limit_api_burst),
        }
    }

    /// The CORS origins, as listed.
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The trusted proxies (checked by [`Self::problems`]; empty if invalid).
    pub fn trusted_proxies(&self) -> carapace_auth::rate_limit::TrustedProxies {
        carapace_auth::rate_limit::TrustedProxies::parse(&self.trusted_proxies).unwrap_or_default()
    }

    /// Whether dev tokens are accepted.
    pub fn dev_tokens_enabled(&self) -> bool {
        self.dev_tokens.unwrap_or(self.profile == Profile::Dev)
    }

    /// The database engine of `database_url`.
    pub fn backend(&self) -> Option<Backend> {
        Backend::of_url(self.database_url.expose_secret())
    }

    /// The listen address (validated by [`Self::problems`]).
    pub fn bind_addr(&self) -> anyhow::Result<SocketAddr> {
        self.bind
            .parse()
            .with_context(|| format!("CARAPACE_BIND {:?} is not host:port", self.bind))
    }

    /// Connection settings for the server's pool.
    pub fn db(&self) -> DbSettings {
        self.db_with(self.database_url.clone())
    }

    /// Connection settings for migrations: the owner URL if set, else the
    /// server URL (SQLite has no roles).
    pub fn owner_db(&self) -> DbSettings {
        self.db_with(
            self.database_owner_url
                .clone()
                .unwrap_or_else(|| self.database_url.clone()),
        )
    }

    fn db_with(&self, url: SecretString) -> DbSettings {
        DbSettings {
            url,
            pool_max: self.database_pool_max,
            connect_timeout: Duration::from_secs(self.database_connect_timeout_secs),
            acquire_timeout: Duration::from_secs(self.database_acquire_timeout_secs),
            statement_timeout: Duration::from_secs(self.database_statement_timeout_secs),
            tls: self.database_tls,
            group_workers: self.database_group_workers,
        }
    }

    /// Whether local accounts (and Carapace's own tokens) are on: a signing
    /// key is configured, or the profile is `dev` (key generated).
    pub fn local_accounts_enabled(&self) -> bool {
        self.signing_key_file.is_some() || self.profile == Profile::Dev
    }

    /// Issuer settings when `oidc_issuer` is set (validated by [`Self::problems`]).
    pub fn oidc(&self) -> Option<OidcSettings> {
        let issuer = self.oidc_issuer.clone()?;
        let (flavor, org, roles) = match self.oidc_provider {
            OidcProvider::Generic => (IssuerFlavor::Standard, "org_id", "roles"),
            OidcProvider::Cognito => (IssuerFlavor::Cognito, "custom:org_id", "cognito:groups"),
        };
        let rules = ClaimRules {
            audience: self.oidc_audience.clone().unwrap_or_default(),
            flavor,
            org_claim: self
                .oidc_org_claim
                .clone()
                .unwrap_or_else(|| org.to_owned()),
            roles_claim: self
                .oidc_roles_claim
                .clone()
                .unwrap_or_else(|| roles.to_owned()),
        };
        Some(OidcSettings::new(issuer, rules))
    }

    /// The effective settings with every secret redacted, as JSON.
    pub fn redacted(&self) -> serde_json::Value {
        let secret = |s: &Option<SecretString>| match s {
            Some(_) => serde_json::Value::from("[redacted]"),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "profile": self.profile,
            "bind": self.bind,
            "database_url": redact_url(self.database_url.expose_secret()),
            "database_owner_url": self.database_owner_url.as_ref().map(|u| redact_url(u.expose_secret())),
            "database_pool_max": self.database_pool_max,
            "database_connect_timeout_secs": self.database_connect_timeout_secs,
            "database_acquire_timeout_secs": self.database_acquire_timeout_secs,
            "database_statement_timeout_secs": self.database_statement_timeout_secs,
            "database_tls": self.database_tls,
            "database_allow_insecure": self.database_allow_insecure,
            "dev_tokens": self.dev_tokens_enabled(),
            "dev_token_secret": secret(&self.dev_token_secret),
            "cursor_secret": secret(&self.cursor_secret),
            "body_limit_bytes": self.body_limit_bytes,
            "shutdown_timeout_secs": self.shutdown_timeout_secs,
            "refresh_grace_secs": self.refresh_grace_secs,
            "data_dir": self.data_dir,
            "log_format": self.log_format,
            "log_level": self.log_level,
            "signing_key_file": self.signing_key_file,
            "master_key_file": self.master_key_file,
            "audit_signing_key_file": self.audit_signing_key_file,
            "audit_retention_days": self.audit_retention_days,
            "audit_anchor_every_secs": self.audit_anchor_every_secs,
            "audit_witness": match (&self.audit_witness_url, self.audit_witness_waived) {
                (Some(url), _) => serde_json::Value::from(url.as_str()),
                (None, true) => serde_json::Value::from(
                    "none (waived: a database superuser can cut the newest events unseen)",
                ),
                (None, false) => serde_json::Value::from(
                    "none (checkpoints are kept in the database only; production refuses this unless waived)",
                ),
            },
            "audit_witness_endpoint": self.audit_witness_endpoint_url().map(String::from),
            "audit_witness_region": self.audit_witness_region,
            "audit_witness_access_key_id": self.audit_witness_access_key_id,
            "audit_witness_secret_access_key": secret(&self.audit_witness_secret_access_key),
            "audit_witness_session_token": secret(&self.audit_witness_session_token),
            "audit_witness_retention_days": self.audit_witness_retention_days.unwrap_or(self.audit_retention_days),
            "audit_witness_max_backlog_secs": self.audit_witness_max_backlog_secs,
            "audit_witness_allow_loopback": self.audit_witness_allow_loopback,
            "audit_witness_waived": self.audit_witness_waived,
            "alert_webhook_url": self.alert_webhook_url,
            "alert_webhook_secret": secret(&self.alert_webhook_secret),
            "alert_webhook_allowed_hosts": self.alert_webhook_allowed_hosts,
            "alert_webhook_allow_loopback": self.alert_webhook_allow_loopback,
            "appointment_max_minutes": self.appointment_max_minutes,
            "reminder_offsets": self.reminder_offsets,
            "sms_url": self.sms_url,
            "sms_account_sid": self.sms_account_sid,
            "sms_auth_token": secret(&self.sms_auth_token),
            "sms_from": self.sms_from,
            "sms_allow_loopback": self.sms_allow_loopback,
            "ai_provider": self.ai_provider,
            "ai_baa_signed": self.ai_baa_signed,
            "ai_url": self.ai_url,
            "ai_api_key": secret(&self.ai_api_key),
            "ai_model": self.ai_model,
            "ai_allow_loopback": self.ai_allow_loopback,
            "kms_key_id": self.kms_key_id,
            "kms_region": self.kms_region,
            "kms_endpoint": self.kms_endpoint,
            "kms_access_key_id": self.kms_access_key_id,
            "kms_secret_access_key": secret(&self.kms_secret_access_key),
            "kms_session_token": secret(&self.kms_session_token),
            "smtp_url": self.smtp_url.as_ref().map(|u| redact_url(u.expose_secret())),
            "mail_from": self.mail_from,
            "signing_key_previous_files": self.signing_key_previous_files,
            "base_domain": self.base_domain,
            "oidc_issuer": self.oidc_issuer,
            "oidc_audience": self.oidc_audience,
            "oidc_provider": self.oidc_provider,
            "oidc_org_claim": self.oidc().map(|o| o.rules.org_claim),
            "oidc_roles_claim": self.oidc().map(|o| o.rules.roles_claim),
        })
    }
}

/// A database URL with any password replaced.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "[unparseable]".into(),
    }
}

/// The bucket and prefix of `s3://bucket/prefix` (a valid bucket name; a
/// prefix of safe segments, no trailing `/`), or `None`.
pub fn s3_location(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let (bucket, prefix) = (bucket.to_owned(), prefix.trim_end_matches('/').to_owned());
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_empty()
        || (prefix.len() <= 512
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            && !prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."));
    (bucket_ok && prefix_ok).then_some((bucket, prefix))
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load(jail: &mut Jail, toml: &str, env: &[(&str, &str)]) -> Result<Settings, figment::Error> {
        jail.clear_env();
        jail.create_file("carapace.toml", toml)?;
        for (k, v) in env {
            jail.set_env(k, v);
        }
        Settings::load(Path::new("carapace.toml"))
            .map_err(|e| figment::Error::from(format!("{e:#}")))
    }

    #[test]
    fn layers_defaults_then_file_then_environment() {
        Jail::expect_with(|jail| {
            let s = load(
                jail,
                "bind = \"127.0.0.1:9000\"\ndatabase_pool_max = 3\n",
                &[
                    ("CARAPACE_DATABASE_POOL_MAX", "7"),
                    ("CARAPACE_TEST_PG_URL", "ignored"),
                ],
            )?;
            assert_eq!(s.bind, "127.0.0.1:9000");
            assert_eq!(s.database_pool_max, 7);
            assert_eq!(s.body_limit_bytes, 64 * 1024);
            assert_eq!(s.profile, Profile::Dev);
            assert!(s.dev_tokens_enabled());
            assert!(s.problems().is_empty(), "{:?}", s.problems());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        Jail::expect_with(|jail| {
            let file = load(jail, "databse_url = \"x\"\n", &[]).map(|_| ()).err();
            assert!(file.is_some_and(|e| e.to_string().contains("databse_url")));
            let env = load(jail, "", &[("CARAPACE_BYND", "x")]).map(|_| ()).err();
            assert!(env.is_some_and(|e| e.to_string().contains("bynd")));
            Ok(())
        });
    }

    #[test]
    fn redaction_hides_secrets_and_passwords() {
        Jail::expect_with(|jail| {
            let s = load(
                jail,
                "database_url = \"postgres://app:hunter2hunter2@db:5432/c\"\n",
                &[(
                    "CARAPACE_DEV_TOKEN_SECRET",
                    "0123456789abcdef0123456789abcdef",
                )],
            )?;
            let shown = s.redacted().to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
            assert!(shown.contains("[redacted]"));
            Ok(())
        });
    }
}
