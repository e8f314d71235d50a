//! The effective configuration, every secret redacted (`config check`).

use secrecy::{ExposeSecret as _, SecretString};

use super::{Config, redact_url};

impl Config {
    /// The effective settings with every secret redacted, as JSON.
    pub fn redacted(&self) -> serde_json::Value {
        let secret = |s: &Option<SecretString>| match s {
            Some(_) => serde_json::Value::from("[redacted]"),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "profile": self.profile,
            "bind": self.http.bind,
            "database_url": redact_url(self.database.url.expose_secret()),
            "database_owner_url": self.database.owner_url.as_ref().map(|u| redact_url(u.expose_secret())),
            "database_pool_max": self.database.pool_max,
            "database_connect_timeout_secs": self.database.connect_timeout_secs,
            "database_acquire_timeout_secs": self.database.acquire_timeout_secs,
            "database_statement_timeout_secs": self.database.statement_timeout_secs,
            "database_tls": self.database.tls,
            "database_allow_insecure": self.database.allow_insecure,
            "dev_tokens": self.dev_tokens_enabled(),
            "dev_token_secret": secret(&self.auth.dev_token_secret),
            "cursor_secret": secret(&self.auth.cursor_secret),
            "body_limit_bytes": self.limits.body_limit_bytes,
            "shutdown_timeout_secs": self.http.shutdown_timeout_secs,
            "http_workers": self.http.workers,
            "refresh_grace_secs": self.auth.refresh_grace_secs,
            "data_dir": self.data_dir,
            "log_format": self.telemetry.log_format,
            "log_level": self.telemetry.log_level,
            "signing_key_file": self.auth.signing_key_file,
            "master_key_file": self.keys.master_key_file,
            "audit_signing_key_file": self.audit.signing_key_file,
            "audit_retention_days": self.audit.retention_days,
            "audit_anchor_every_secs": self.audit.anchor_every_secs,
            "audit_witness": match (&self.audit.witness.url, self.audit.witness.waived) {
                (Some(url), _) => serde_json::Value::from(url.as_str()),
                (None, true) => serde_json::Value::from(
                    "none (waived: a database superuser can cut the newest events unseen)",
                ),
                (None, false) => serde_json::Value::from(
                    "none (checkpoints are kept in the database only; production refuses this unless waived)",
                ),
            },
            "audit_witness_endpoint": self.audit.witness.endpoint_url().map(String::from),
            "audit_witness_region": self.audit.witness.region,
            "audit_witness_access_key_id": self.audit.witness.access_key_id,
            "audit_witness_secret_access_key": secret(&self.audit.witness.secret_access_key),
            "audit_witness_session_token": secret(&self.audit.witness.session_token),
            "audit_witness_retention_days": self.audit.witness_retention_days(),
            "audit_witness_max_backlog_secs": self.audit.witness.max_backlog_secs,
            "audit_witness_allow_loopback": self.audit.witness.allow_loopback,
            "audit_witness_waived": self.audit.witness.waived,
            "alert_webhook_url": self.alerts.webhook_url,
            "alert_webhook_secret": secret(&self.alerts.webhook_secret),
            "alert_webhook_allowed_hosts": self.alerts.webhook_allowed_hosts,
            "alert_webhook_allow_loopback": self.alerts.webhook_allow_loopback,
            "appointment_max_minutes": self.scheduling.appointment_max_minutes,
            "reminder_offsets": self.scheduling.reminder_offsets,
            "sms_url": self.sms.url,
            "sms_account_sid": self.sms.account_sid,
            "sms_auth_token": secret(&self.sms.auth_token),
            "sms_from": self.sms.from,
            "sms_allow_loopback": self.sms.allow_loopback,
            "ai_provider": self.assistant.provider,
            "ai_baa_signed": self.assistant.baa_signed,
            "ai_url": self.assistant.url,
            "ai_api_key": secret(&self.assistant.api_key),
            "ai_model": self.assistant.model,
            "ai_allow_loopback": self.assistant.allow_loopback,
            "kms_key_id": self.keys.kms_key_id,
            "kms_region": self.keys.kms_region,
            "kms_endpoint": self.keys.kms_endpoint,
            "kms_access_key_id": self.keys.kms_access_key_id,
            "kms_secret_access_key": secret(&self.keys.kms_secret_access_key),
            "kms_session_token": secret(&self.keys.kms_session_token),
            "smtp_url": self.mail.smtp_url.as_ref().map(|u| redact_url(u.expose_secret())),
            "mail_from": self.mail.from,
            "signing_key_previous_files": self.auth.signing_key_previous_files,
            "base_domain": self.http.base_domain,
            "oidc_issuer": self.oidc.issuer,
            "oidc_audience": self.oidc.audience,
            "oidc_provider": self.oidc.provider,
            "oidc_org_claim": self.oidc.settings().map(|o| o.rules.org_claim),
            "oidc_roles_claim": self.oidc.settings().map(|o| o.rules.roles_claim),
        })
    }
}
