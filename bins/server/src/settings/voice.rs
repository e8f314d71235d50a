//! Telephony: the Twilio-compatible voice API and the public URL its
//! callbacks are signed over.

use std::time::Duration;

use carapace_clinical::telephony::limits::RECORDING_BYTES_MAX;
use carapace_infra::outbound::{OutboundPolicy, SafeHttp};
use carapace_infra::voice::{LocalVoice, TwilioVoice, VoiceProvider};

use super::checks::ConfigProblem;
use super::{Profile, api_policy};

/// Telephony through a Twilio-compatible voice API. Each organization's
/// account (id, auth token, number) is set through the API, not here.
#[derive(Clone, Debug)]
pub struct VoiceSection {
    /// Base URL of the voice API (`https://api.twilio.com`), or `local`
    /// (development: no call is placed); unset: no telephony.
    pub url: Option<String>,
    /// The server's public base URL as the provider reaches it
    /// (`https://api.clinic.example`): callbacks are addressed to it and
    /// their signatures checked over it, never over the Host header.
    pub public_url: Option<String>,
    /// Let voice requests go to a loopback address (tests; refused in
    /// production).
    pub allow_loopback: bool,
}

impl VoiceSection {
    /// The voice API's base URL, its outbound policy under `profile` (10 s
    /// per request, recordings up to the limit) and the public URL, when
    /// telephony is configured.
    pub fn adapter(&self, profile: Profile) -> Option<(String, OutboundPolicy, String)> {
        let base = self.url.clone()?;
        let public = self.public_url()?;
        let policy = api_policy(
            &base,
            profile,
            self.allow_loopback,
            Duration::from_secs(10),
            RECORDING_BYTES_MAX,
        )?;
        Some((base, policy, public))
    }

    /// The voice provider and the public URL, when telephony is
    /// configured: `CARAPACE_VOICE_URL=local` is the development provider
    /// (no call is placed), any other URL a Twilio-compatible API.
    pub fn provider(&self, profile: Profile) -> Option<(VoiceProvider, String)> {
        if self.url.as_deref() == Some("local") {
            return Some((VoiceProvider::Local(LocalVoice), self.public_url()?));
        }
        let (base, policy, public) = self.adapter(profile)?;
        let api = TwilioVoice::new(SafeHttp::new(policy), base);
        Some((VoiceProvider::Twilio(api), public))
    }

    /// The public URL without a trailing `/`, if it is an http(s) URL
    /// with a host and no query or fragment.
    fn public_url(&self) -> Option<String> {
        let raw = self.public_url.as_deref()?;
        let url = url::Url::parse(raw).ok()?;
        let ok = matches!(url.scheme(), "https" | "http")
            && url.host_str().is_some()
            && url.query().is_none()
            && url.fragment().is_none();
        ok.then(|| raw.trim_end_matches('/').to_owned())
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if (self.url.is_some() || self.public_url.is_some())
            && self.provider(Profile::Dev).is_none()
        {
            p.push(ConfigProblem::new(
                "CARAPACE_VOICE_URL",
                "telephony needs CARAPACE_VOICE_URL (a URL) and CARAPACE_PUBLIC_URL (an http(s) URL without query) together",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: Option<&str>, public: Option<&str>) -> VoiceSection {
        VoiceSection {
            url: url.map(str::to_owned),
            public_url: public.map(str::to_owned),
            allow_loopback: false,
        }
    }

    #[test]
    fn voice_needs_both_urls_and_a_clean_public_url() {
        let mut p = Vec::new();
        section(None, None).problems(&mut p);
        assert!(p.is_empty());
        for (url, public) in [
            (Some("https://api.twilio.com"), None),
            (None, Some("https://api.clinic.example")),
            (
                Some("https://api.twilio.com"),
                Some("https://x.example/?a=1"),
            ),
            (Some("https://api.twilio.com"), Some("ftp://x.example")),
            (Some("not a url"), Some("https://x.example")),
        ] {
            let mut p = Vec::new();
            section(url, public).problems(&mut p);
            assert_eq!(p.len(), 1, "{url:?} {public:?}");
        }
        let (_, policy, public) = section(
            Some("https://api.twilio.com"),
            Some("https://api.clinic.example/"),
        )
        .adapter(Profile::Production)
        .unwrap_or_else(|| unreachable!());
        assert_eq!(public, "https://api.clinic.example");
        let local = section(Some("local"), Some("http://localhost:8080"));
        assert!(matches!(
            local.provider(Profile::Dev),
            Some((VoiceProvider::Local(_), _))
        ));
        assert_eq!(policy.allowed_hosts, vec!["api.twilio.com".to_owned()]);
        assert!(policy.https_only);
    }
}
