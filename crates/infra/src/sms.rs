//! SMS through a Twilio-compatible REST API (`POST
//! {base}/2010-04-01/Accounts/{sid}/Messages.json`, form `To`, `From`,
//! `Body`, HTTP basic auth), always through the SSRF-safe client. The
//! reminder's idempotency key goes in an `Idempotency-Key` header (the same
//! on every attempt).

use base64::Engine as _;
use carapace_clinical::appointment::{Notifier, NotifyError, ReminderMessage};
use secrecy::{ExposeSecret as _, SecretString};

use crate::outbound::{OutboundError, SafeHttp};

/// Where and as whom to send SMS.
#[derive(Clone)]
pub struct SmsSettings {
    /// API base, e.g. `https://api.twilio.com`.
    pub base_url: String,
    /// Account SID (the basic-auth user and part of the path).
    pub account_sid: String,
    /// Auth token (the basic-auth password).
    pub auth_token: SecretString,
    /// Sender number or messaging service.
    pub from: String,
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

/// The SMS [`Notifier`].
#[derive(Clone, Debug)]
pub struct TwilioSms {
    http: SafeHttp,
    settings: SmsSettings,
}

impl TwilioSms {
    /// Sends through `http` as `settings` say.
    pub fn new(http: SafeHttp, settings: SmsSettings) -> Self {
        Self { http, settings }
    }
}

impl Notifier for TwilioSms {
    async fn send(&self, message: &ReminderMessage) -> Result<(), NotifyError> {
        let s = &self.settings;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            s.base_url.trim_end_matches('/'),
            s.account_sid
        );
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            s.account_sid,
            s.auth_token.expose_secret()
        ));
        let sent = self
            .http
            .post_form(
                &url,
                &[
                    ("authorization", format!("Basic {credentials}")),
                    ("idempotency-key", message.idempotency_key.clone()),
                ],
                &[
                    ("To", message.to.expose_phi().as_str()),
                    ("From", s.from.as_str()),
                    ("Body", message.text.as_str()),
                ],
            )
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(OutboundError::Status(code)) if code == 429 || code >= 500 => {
                Err(NotifyError::Temporary(format!("status {code}")))
            }
            Err(OutboundError::Status(code)) => {
                Err(NotifyError::Permanent(format!("status {code}")))
            }
            Err(OutboundError::Refused(why)) => Err(NotifyError::Permanent(why)),
            Err(e) => Err(NotifyError::Temporary(e.to_string())),
        }
    }
}
