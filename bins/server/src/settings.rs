//! Settings: loaded once (defaults < optional `carapace.toml` < `CARAPACE_*`
//! environment), validated once with every problem reported, then passed
//! down by reference. Nothing here runs at import time.
//!
//! [`Settings`] is the input, one field per key (the names are an outside
//! contract); [`Config`] is the same values grouped into sections, each
//! with its own type and its own rules ([`Config::problems`]), which is
//! what the server reads.

mod alerts;
mod assistant;
mod audit;
mod auth;
mod checks;
mod database;
mod http;
mod input;
mod keys;
mod limits;
mod mail;
mod oidc;
mod redacted;
mod scheduling;
mod sms;
mod telemetry;
mod voice;

use std::borrow::Cow;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use serde::Deserialize;

pub use alerts::AlertsSection;
pub use assistant::AssistantSection;
pub use audit::{AuditSection, WitnessSection};
pub use auth::AuthSection;
pub use checks::{ConfigProblem, MIN_SECRET_BYTES, PRODUCTION_CHECKS, ProductionCheck};
pub use database::DatabaseSection;
pub use http::HttpSection;
pub use input::Settings;
pub use keys::KeysSection;
pub use limits::LimitsSection;
pub use mail::MailSection;
pub use oidc::OidcSection;
pub use scheduling::SchedulingSection;
pub use sms::SmsSection;
pub use telemetry::TelemetrySection;
pub use voice::VoiceSection;

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

/// The settings grouped into sections, as the server reads them: built
/// from [`Settings`] once ([`Settings::config`]); every key keeps its
/// `CARAPACE_*` name.
#[derive(Clone, Debug)]
pub struct Config {
    /// `dev` or `production`.
    pub profile: Profile,
    /// Where local state lives (SQLite file, dev secrets).
    pub data_dir: PathBuf,
    /// The HTTP edge: where the server listens, which browsers and proxies it believes, per-organization hosts, and shutdown.
    pub http: HttpSection,
    /// The database: URLs, pool, timeouts and TLS.
    pub database: DatabaseSection,
    /// Request limits: body size and the rate limits (counted in Redis when configured).
    pub limits: LimitsSection,
    /// Carapace's own credentials: dev tokens, local-account signing keys, sessions, cursors and the operator organization.
    pub auth: AuthSection,
    /// The external OIDC issuer.
    pub oidc: OidcSection,
    /// The key-encryption key: a local key file or a KMS key.
    pub keys: KeysSection,
    /// The audit trail: checkpoint signing, retention and anchoring.
    pub audit: AuditSection,
    /// Security alerts, POSTed HMAC-signed to a webhook.
    pub alerts: AlertsSection,
    /// Outgoing mail (password reset, reminders).
    pub mail: MailSection,
    /// SMS reminders through a Twilio-compatible API.
    pub sms: SmsSection,
    /// Telephony through a Twilio-compatible voice API.
    pub voice: VoiceSection,
    /// The AI assistant's provider.
    pub assistant: AssistantSection,
    /// Appointments and their reminders.
    pub scheduling: SchedulingSection,
    /// Logs, traces and metrics.
    pub telemetry: TelemetrySection,
}

impl Config {
    /// Every problem with these settings, section by section, then the
    /// production table. Empty means valid.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        self.http.problems(&mut p);
        self.database.problems(&mut p);
        self.limits.problems(&mut p);
        self.auth.problems(&mut p);
        self.telemetry.problems(&mut p);
        self.oidc.problems(&mut p);
        self.mail.problems(&mut p);
        self.keys.problems(&mut p);
        self.alerts.problems(&mut p);
        self.audit.problems(&mut p);
        self.scheduling.problems(&mut p);
        self.sms.problems(&mut p);
        self.voice.problems(&mut p);
        self.assistant.problems(&mut p);
        if self.profile == Profile::Production {
            p.extend(PRODUCTION_CHECKS.iter().filter_map(|c| (c.check)(self)));
        }
        p
    }

    /// Whether dev tokens are accepted.
    pub fn dev_tokens_enabled(&self) -> bool {
        self.auth.dev_tokens_enabled(self.profile)
    }

    /// Whether local accounts (and Carapace's own tokens) are on: a signing
    /// key is configured, or the profile is `dev` (key generated).
    pub fn local_accounts_enabled(&self) -> bool {
        self.auth.local_accounts_enabled(self.profile)
    }
}

impl Settings {
    /// These settings grouped into sections.
    pub fn config(&self) -> Config {
        Config {
            profile: self.profile,
            data_dir: self.data_dir.clone(),
            http: HttpSection {
                bind: self.bind.clone(),
                cors_origins: self.cors_origins.clone(),
                trusted_proxies: self.trusted_proxies.clone(),
                base_domain: self.base_domain.clone(),
                shutdown_timeout_secs: self.shutdown_timeout_secs,
                workers: self.http_workers,
            },
            database: DatabaseSection {
                url: self.database_url.clone(),
                owner_url: self.database_owner_url.clone(),
                pool_max: self.database_pool_max,
                connect_timeout_secs: self.database_connect_timeout_secs,
                acquire_timeout_secs: self.database_acquire_timeout_secs,
                statement_timeout_secs: self.database_statement_timeout_secs,
                group_workers: self.database_group_workers,
                tls: self.database_tls,
                allow_insecure: self.database_allow_insecure,
            },
            limits: LimitsSection {
                body_limit_bytes: self.body_limit_bytes,
                redis_url: self.redis_url.clone(),
                auth_per_minute: self.rate_limit_auth_per_minute,
                auth_burst: self.rate_limit_auth_burst,
                ai_per_minute: self.rate_limit_ai_per_minute,
                ai_burst: self.rate_limit_ai_burst,
                api_per_minute: self.rate_limit_api_per_minute,
                api_burst: self.rate_limit_api_burst,
                export_ttl_secs: self.export_ttl_secs,
            },
            auth: AuthSection {
                dev_tokens: self.dev_tokens,
                dev_token_secret: self.dev_token_secret.clone(),
                cursor_secret: self.cursor_secret.clone(),
                signing_key_file: self.signing_key_file.clone(),
                signing_key_previous_files: self.signing_key_previous_files.clone(),
                refresh_grace_secs: self.refresh_grace_secs,
                operator_org: self.operator_org.clone(),
            },
            oidc: OidcSection {
                issuer: self.oidc_issuer.clone(),
                audience: self.oidc_audience.clone(),
                provider: self.oidc_provider,
                org_claim: self.oidc_org_claim.clone(),
                roles_claim: self.oidc_roles_claim.clone(),
            },
            keys: KeysSection {
                master_key_file: self.master_key_file.clone(),
                kms_key_id: self.kms_key_id.clone(),
                kms_region: self.kms_region.clone(),
                kms_endpoint: self.kms_endpoint.clone(),
                kms_access_key_id: self.kms_access_key_id.clone(),
                kms_secret_access_key: self.kms_secret_access_key.clone(),
                kms_session_token: self.kms_session_token.clone(),
            },
            audit: AuditSection {
                signing_key_file: self.audit_signing_key_file.clone(),
                retention_days: self.audit_retention_days,
                anchor_every_secs: self.audit_anchor_every_secs,
                witness: WitnessSection {
                    url: self.audit_witness_url.clone(),
                    endpoint: self.audit_witness_endpoint.clone(),
                    region: self.audit_witness_region.clone(),
                    access_key_id: self.audit_witness_access_key_id.clone(),
                    secret_access_key: self.audit_witness_secret_access_key.clone(),
                    session_token: self.audit_witness_session_token.clone(),
                    retention_days: self.audit_witness_retention_days,
                    max_backlog_secs: self.audit_witness_max_backlog_secs,
                    allow_loopback: self.audit_witness_allow_loopback,
                    waived: self.audit_witness_waived,
                },
            },
            alerts: AlertsSection {
                webhook_url: self.alert_webhook_url.clone(),
                webhook_secret: self.alert_webhook_secret.clone(),
                webhook_allowed_hosts: self.alert_webhook_allowed_hosts.clone(),
                webhook_allow_loopback: self.alert_webhook_allow_loopback,
            },
            mail: MailSection {
                smtp_url: self.smtp_url.clone(),
                from: self.mail_from.clone(),
            },
            sms: SmsSection {
                url: self.sms_url.clone(),
                account_sid: self.sms_account_sid.clone(),
                auth_token: self.sms_auth_token.clone(),
                from: self.sms_from.clone(),
                allow_loopback: self.sms_allow_loopback,
            },
            voice: VoiceSection {
                url: self.voice_url.clone(),
                public_url: self.public_url.clone(),
                allow_loopback: self.voice_allow_loopback,
            },
            assistant: AssistantSection {
                provider: self.ai_provider.clone(),
                baa_signed: self.ai_baa_signed,
                url: self.ai_url.clone(),
                api_key: self.ai_api_key.clone(),
                model: self.ai_model.clone(),
                allow_loopback: self.ai_allow_loopback,
                speech_provider: self.speech_provider.clone(),
                stt_model: self.stt_model.clone(),
                tts_model: self.tts_model.clone(),
            },
            scheduling: SchedulingSection {
                appointment_max_minutes: self.appointment_max_minutes,
                reminder_offsets: self.reminder_offsets.clone(),
            },
            telemetry: TelemetrySection {
                log_format: self.log_format,
                log_level: self.log_level.clone(),
                log_redact_keys: self.log_redact_keys.clone(),
                otel_endpoint: self.otel_endpoint.clone(),
                metrics_token: self.metrics_token.clone(),
                slow_request_ms: self.slow_request_ms,
            },
        }
    }

    /// Every problem with these settings ([`Config::problems`]). Empty
    /// means valid.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        self.config().problems()
    }

    /// The effective settings with every secret redacted, as JSON.
    pub fn redacted(&self) -> serde_json::Value {
        self.config().redacted()
    }

    /// Whether dev tokens are accepted.
    pub fn dev_tokens_enabled(&self) -> bool {
        self.config().dev_tokens_enabled()
    }

    /// The KMS endpoint in use: the configured one, else AWS's for the region.
    pub fn kms_endpoint_url(&self) -> Option<url::Url> {
        self.config().keys.kms_endpoint_url()
    }

    /// The witness's bucket and key prefix, if `audit_witness_url` is a
    /// valid `s3://bucket[/prefix]`.
    pub fn audit_witness_bucket(&self) -> Option<(String, String)> {
        self.config().audit.witness.bucket()
    }

    /// The witness's endpoint: the configured one, else AWS's for the region.
    pub fn audit_witness_endpoint_url(&self) -> Option<url::Url> {
        self.config().audit.witness.endpoint_url()
    }
}

/// Either form of the settings, for the functions that tests call with
/// [`Settings`] and the server with [`Config`].
pub trait AsConfig {
    /// The sections: borrowed from a [`Config`], built from [`Settings`].
    fn as_config(&self) -> Cow<'_, Config>;
}

impl AsConfig for Config {
    fn as_config(&self) -> Cow<'_, Config> {
        Cow::Borrowed(self)
    }
}

impl AsConfig for Settings {
    fn as_config(&self) -> Cow<'_, Config> {
        Cow::Owned(self.config())
    }
}

/// The outbound policy for an API at `base_url` under `profile`: that
/// host only (none when `base_url` is not a URL with a host).
fn api_policy(
    base_url: &str,
    profile: Profile,
    allow_loopback: bool,
    timeout: std::time::Duration,
    max_response_bytes: usize,
) -> Option<carapace_infra::outbound::OutboundPolicy> {
    let host = url::Url::parse(base_url)
        .ok()?
        .host_str()?
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    Some(carapace_infra::outbound::OutboundPolicy {
        https_only: profile == Profile::Production,
        allowed_hosts: vec![host],
        allow_loopback,
        timeout,
        max_response_bytes,
    })
}

/// A database URL with any password replaced.
pub(crate) fn redact_url(raw: &str) -> String {
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
