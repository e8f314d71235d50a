//! Security alerts, POSTed HMAC-signed to a webhook.

use std::time::Duration;

use carapace_infra::outbound::OutboundPolicy;
use secrecy::SecretString;

use super::Profile;
use super::checks::{ConfigProblem, short_secret};

/// Security alerts, POSTed HMAC-signed to a webhook.
#[derive(Clone, Debug)]
pub struct AlertsSection {
    /// Where alerts (failed-login bursts, cross-tenant attempts,
    /// break-glass, refresh-token reuse) are POSTed, HMAC-signed.
    pub webhook_url: Option<String>,
    /// The HMAC key shared with the alert receiver (at least 32 bytes).
    pub webhook_secret: Option<SecretString>,
    /// Hosts alerts may be sent to (comma-separated); default the webhook
    /// URL's host.
    pub webhook_allowed_hosts: Option<String>,
    /// Let alerts go to a loopback address (tests; refused in production).
    pub webhook_allow_loopback: bool,
}

impl AlertsSection {
    /// The outbound policy for alert webhooks under `profile`.
    pub fn policy(&self, profile: Profile) -> OutboundPolicy {
        let hosts = match &self.webhook_allowed_hosts {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => self
                .webhook_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| {
                    u.host_str()
                        .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
                })
                .into_iter()
                .collect(),
        };
        OutboundPolicy {
            https_only: profile == Profile::Production,
            allowed_hosts: hosts,
            allow_loopback: self.webhook_allow_loopback,
            timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
        }
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        let Some(url) = &self.webhook_url else {
            return;
        };
        let ok = url::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            && url.len() <= 2048;
        if !ok {
            p.push(ConfigProblem::new(
                "CARAPACE_ALERT_WEBHOOK_URL",
                "must be an http(s) URL of at most 2048 characters",
            ));
        }
        match &self.webhook_secret {
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
}
