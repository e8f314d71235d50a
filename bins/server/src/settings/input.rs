//! The settings as read: one flat struct whose fields are exactly the
//! `CARAPACE_*` keys, loaded once (defaults < optional `carapace.toml` <
//! environment).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use carapace_infra::TlsMode;
use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use secrecy::SecretString;
use serde::Deserialize;

use super::{LogFormat, OidcProvider, Profile};

/// Environment variables that belong to the test harness, not the server.
const HARNESS_VARS: &[&str] = &[
    "require_services",
    "test_pg_url",
    "test_redis_url",
    "test_moto_server",
];

/// Every setting as read: one field per key, each also `CARAPACE_<KEY>`
/// in the environment and `<key> = …` in `carapace.toml`. The server reads
/// them grouped, as a [`Config`](super::Config) ([`Settings::config`]).
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
    /// HTTP worker threads (0: half the CPUs, at least one).
    pub http_workers: u32,
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
    /// Base URL of the Twilio-compatible voice API
    /// (`https://api.twilio.com`); unset: no telephony.
    pub voice_url: Option<String>,
    /// Let voice requests go to a loopback address (tests; refused in
    /// production).
    pub voice_allow_loopback: bool,
    /// The server's public base URL as outside services reach it
    /// (telephony callbacks are addressed to it and their signatures
    /// checked over it).
    pub public_url: Option<String>,
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
    /// The speech provider: `none` (default), `local` (espeak-ng and a
    /// transcription stand-in, development only) or `openai` (the
    /// OpenAI-compatible audio API at `CARAPACE_AI_URL`).
    pub speech_provider: String,
    /// Transcription model of the openai speech provider.
    pub stt_model: String,
    /// Speech model of the openai speech provider.
    pub tts_model: String,
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
    /// How long a FHIR bulk export's files are kept, in seconds (60 to
    /// 604800, default 3600); then they are deleted.
    pub export_ttl_secs: u64,
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
            http_workers: 0,
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
            voice_url: None,
            voice_allow_loopback: false,
            public_url: None,
            ai_provider: "none".into(),
            ai_baa_signed: false,
            ai_url: None,
            ai_api_key: None,
            ai_model: "gpt-4o-mini".into(),
            ai_allow_loopback: false,
            speech_provider: "none".into(),
            stt_model: "whisper-1".into(),
            tts_model: "tts-1".into(),
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
            export_ttl_secs: 3600,
        }
    }
}

impl Settings {
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
        aws_defaults(
            &mut settings.kms_region,
            &mut settings.kms_access_key_id,
            &mut settings.kms_secret_access_key,
            &mut settings.kms_session_token,
        );
        // So does the audit witness.
        if settings.audit_witness_url.is_some() {
            aws_defaults(
                &mut settings.audit_witness_region,
                &mut settings.audit_witness_access_key_id,
                &mut settings.audit_witness_secret_access_key,
                &mut settings.audit_witness_session_token,
            );
        }
        Ok(settings)
    }
}

/// Fills what is unset of an AWS client's region and credentials from the
/// standard AWS variables (`AWS_REGION` or `AWS_DEFAULT_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
fn aws_defaults(
    region: &mut Option<String>,
    access_key_id: &mut Option<String>,
    secret_access_key: &mut Option<SecretString>,
    session_token: &mut Option<SecretString>,
) {
    let aws = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    *region = region
        .take()
        .or_else(|| aws("AWS_REGION"))
        .or_else(|| aws("AWS_DEFAULT_REGION"));
    *access_key_id = access_key_id.take().or_else(|| aws("AWS_ACCESS_KEY_ID"));
    *secret_access_key = secret_access_key
        .take()
        .or_else(|| aws("AWS_SECRET_ACCESS_KEY").map(SecretString::from));
    *session_token = session_token
        .take()
        .or_else(|| aws("AWS_SESSION_TOKEN").map(SecretString::from));
}
