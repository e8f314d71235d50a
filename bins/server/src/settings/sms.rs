//! SMS reminders through a Twilio-compatible API.

use std::time::Duration;

use carapace_infra::outbound::OutboundPolicy;
use carapace_infra::sms::SmsSettings;
use secrecy::SecretString;

use super::checks::ConfigProblem;
use super::{Profile, api_policy};

/// SMS reminders through a Twilio-compatible API.
#[derive(Clone, Debug)]
pub struct SmsSection {
    /// Base URL of the Twilio-compatible SMS API
    /// (`https://api.twilio.com`); unset: no SMS reminders.
    pub url: Option<String>,
    /// SMS account SID.
    pub account_sid: Option<String>,
    /// SMS auth token.
    pub auth_token: Option<SecretString>,
    /// SMS sender number.
    pub from: Option<String>,
    /// Let SMS go to a loopback address (tests; refused in production).
    pub allow_loopback: bool,
}

impl SmsSection {
    /// The SMS adapter's settings and outbound policy under `profile`, when
    /// SMS is configured.
    pub fn adapter(&self, profile: Profile) -> Option<(SmsSettings, OutboundPolicy)> {
        let base_url = self.url.clone()?;
        let policy = api_policy(
            &base_url,
            profile,
            self.allow_loopback,
            Duration::from_secs(10),
            64 * 1024,
        )?;
        Some((
            SmsSettings {
                base_url,
                account_sid: self.account_sid.clone()?,
                auth_token: self.auth_token.clone()?,
                from: self.from.clone()?,
            },
            policy,
        ))
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        let parts = [
            self.url.is_some(),
            self.account_sid.is_some(),
            self.auth_token.is_some(),
            self.from.is_some(),
        ];
        if parts.iter().any(|x| *x) && self.adapter(Profile::Dev).is_none() {
            p.push(ConfigProblem::new(
                "CARAPACE_SMS_URL",
                "SMS needs CARAPACE_SMS_URL (a URL), CARAPACE_SMS_ACCOUNT_SID, CARAPACE_SMS_AUTH_TOKEN and CARAPACE_SMS_FROM together",
            ));
        }
    }
}
