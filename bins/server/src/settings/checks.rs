//! The rules settings must satisfy. The general rules, which apply to
//! every profile, live with their section (`problems` on each section
//! type); [`PRODUCTION_CHECKS`] is the table of production refusals from
//! the contract, which later features extend with their own rows.

use std::fmt;

use carapace_infra::db::Backend;
use secrecy::{ExposeSecret, SecretString};

use super::Config;
#[cfg(test)]
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
    pub(super) fn new(key: &'static str, message: impl Into<String>) -> Self {
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
    pub check: fn(&Config) -> Option<ConfigProblem>,
}

/// Every production refusal, in the order they are reported.
pub const PRODUCTION_CHECKS: &[ProductionCheck] = &[
    ProductionCheck {
        name: "cors exact https origins",
        check: |s| {
            let bad: Vec<String> = s
                .http
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
            (s.database.backend() == Some(Backend::Sqlite)).then(|| {
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
            (s.database.backend() == Some(Backend::Postgres)
                && !s.database.tls.authenticates_server()
                && !s.database.allow_insecure)
                .then(|| {
                    ConfigProblem::new(
                        "CARAPACE_DATABASE_TLS",
                        "PostgreSQL without a verified server: set verify-full and the server's CA with sslrootcert= in the URLs (require and verify-ca let a man in the middle through), or CARAPACE_DATABASE_ALLOW_INSECURE=true on a trusted private network",
                    )
                })
        },
    },
    ProductionCheck {
        name: "cursor secret",
        check: |s| {
            s.auth.cursor_secret.is_none().then(|| {
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
            (s.oidc.issuer.is_none() && s.auth.signing_key_file.is_none()).then(|| {
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
            let secure = s.mail.smtp_url.as_ref().is_some_and(|u| {
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
            (s.keys.master_key_file.is_none() && s.keys.kms_key_id.is_none()).then(|| {
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
            s.audit.signing_key_file.is_none().then(|| {
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
            (s.audit.witness.url.is_none() && !s.audit.witness.waived).then(|| {
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
                .audit
                .witness
                .endpoint_url()
                .is_some_and(|u| u.scheme() != "https");
            (s.audit.witness.url.is_some() && (http || s.audit.witness.allow_loopback)).then(|| {
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
                .alerts
                .webhook_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"));
            (http || s.alerts.webhook_allow_loopback).then(|| {
                ConfigProblem::new(
                    "CARAPACE_ALERT_WEBHOOK_URL",
                    "alerts go over https to a public receiver in production (no loopback)",
                )
            })
        },
    },
    ProductionCheck {
        name: "speech only with a signed BAA, never the local stand-in, https, no loopback",
        check: |s| match s.assistant.speech_provider.as_str() {
            "none" => None,
            "local" => Some(ConfigProblem::new(
                "CARAPACE_SPEECH_PROVIDER",
                "the local speech provider transcribes with a stand-in; production needs openai or none",
            )),
            _ if !s.assistant.baa_signed => Some(ConfigProblem::new(
                "CARAPACE_AI_BAA_SIGNED",
                "a speech provider is set but no business associate agreement is declared",
            )),
            _ if s.assistant.allow_loopback
                || s.assistant
                    .url
                    .as_deref()
                    .is_some_and(|u| !u.starts_with("https://")) =>
            {
                Some(ConfigProblem::new(
                    "CARAPACE_AI_URL",
                    "the speech provider is reached over https, never on loopback, in production",
                ))
            }
            _ => None,
        },
    },
    ProductionCheck {
        name: "AI only with a signed BAA, never the local provider, https, no loopback",
        check: |s| {
            if s.assistant.provider == "none" {
                None
            } else if !s.assistant.baa_signed {
                Some(ConfigProblem::new(
                    "CARAPACE_AI_BAA_SIGNED",
                    "an AI provider is set but no business associate agreement is declared; production refuses AI without one",
                ))
            } else if s.assistant.provider == "local" {
                Some(ConfigProblem::new(
                    "CARAPACE_AI_PROVIDER",
                    "the local provider is for development; production needs openai or none",
                ))
            } else if s.assistant.allow_loopback
                || s.assistant
                    .url
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
                .sms
                .url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"));
            (http || s.sms.allow_loopback).then(|| {
                ConfigProblem::new(
                    "CARAPACE_SMS_URL",
                    "SMS goes over https to a public API in production (no loopback)",
                )
            })
        },
    },
    ProductionCheck {
        name: "telephony over https, never to loopback, with an https public URL",
        check: |s| {
            let plain =
                |u: &Option<String>| u.as_deref().is_some_and(|u| !u.starts_with("https://"));
            (plain(&s.voice.url) || plain(&s.voice.public_url) || s.voice.allow_loopback).then(|| {
                ConfigProblem::new(
                    "CARAPACE_VOICE_URL",
                    "telephony goes over https to a public API (not the local development provider) and is called back on an https public URL in production (no loopback)",
                )
            })
        },
    },
    ProductionCheck {
        name: "key provider over https",
        check: |s| {
            (s.keys.kms_key_id.is_some()
                && s.keys
                    .kms_endpoint_url()
                    .is_some_and(|u| u.scheme() != "https"))
            .then(|| ConfigProblem::new("CARAPACE_KMS_ENDPOINT", "must be https in production"))
        },
    },
    ProductionCheck {
        name: "issuer over https",
        check: |s| {
            s.oidc
                .issuer
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

/// The problem of a secret shorter than [`MIN_SECRET_BYTES`], if it is.
pub(super) fn short_secret(
    key: &'static str,
    secret: Option<&SecretString>,
) -> Option<ConfigProblem> {
    let len = secret?.expose_secret().len();
    (len < MIN_SECRET_BYTES).then(|| {
        ConfigProblem::new(
            key,
            format!("is {len} bytes; secrets must be at least {MIN_SECRET_BYTES} bytes"),
        )
    })
}

#[cfg(test)]
mod tests;
