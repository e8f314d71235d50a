//! Voice calls through a Twilio-compatible REST API, always through the
//! SSRF-safe client: `POST {base}/2010-04-01/Accounts/{sid}/Calls.json`
//! (place), `POST …/Calls/{call}.json` (redirect with new TwiML), `GET
//! …/Recordings/{rec}.wav` and `DELETE …/Recordings/{rec}.json`; HTTP
//! basic auth with the organization's account id and auth token. And the
//! webhook protocol: `X-Twilio-Signature` is HMAC-SHA1 over the public
//! URL followed by every form parameter's name and value, sorted by name,
//! base64; checked in constant time ([`signature_valid`]).

use base64::Engine as _;
use carapace_clinical::telephony::{
    Callbacks, ProviderSid, Script, Telephony, TelephonyAccount, TelephonyError,
};
use carapace_phi_crypto::Phi;
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use crate::outbound::{OutboundError, SafeHttp};

/// Whether `signature` (base64) is the HMAC-SHA1 under `auth_token` of
/// `url` followed by each of `params` as name then value, sorted by name
/// (then value): Twilio's request signature. Constant time.
pub fn signature_valid(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        auth_token.as_bytes(),
    );
    ring::hmac::verify(&key, &signed_data(url, params), &given).is_ok()
}

/// The signature of `url` and `params` under `auth_token` (what the
/// provider sends; the test stand-in signs with it).
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        auth_token.as_bytes(),
    );
    base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, &signed_data(url, params)).as_ref())
}

fn signed_data(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.as_bytes().to_vec();
    for (name, value) in sorted {
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(value.as_bytes());
    }
    data
}

/// `s` safe inside XML text and attribute values.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `script` in TwiML.
pub fn twiml(script: &Script) -> String {
    let body = match script {
        Script::BotStream { url, task } => format!(
            "<Connect><Stream url=\"{}\"><Parameter name=\"task_id\" value=\"{task}\"/></Stream></Connect>",
            xml(url)
        ),
        Script::Transfer { number } => format!("<Dial>{}</Dial>", xml(number.expose_phi())),
        Script::Menu { text, answer_url } => format!(
            "<Gather numDigits=\"1\" action=\"{}\" method=\"POST\" timeout=\"8\"><Say>{}</Say></Gather><Say>We did not receive an answer. Goodbye.</Say>",
            xml(answer_url),
            xml(text)
        ),
        Script::Say { text, then_dial } => match then_dial {
            Some(number) => format!("<Say>{}</Say><Dial>{}</Dial>", xml(text), xml(number)),
            None => format!("<Say>{}</Say><Hangup/>", xml(text)),
        },
        Script::Voicemail {
            greeting,
            callback,
            max_seconds,
        } => format!(
            "<Say>{}</Say><Record maxLength=\"{max_seconds}\" playBeep=\"true\" recordingStatusCallback=\"{}\" recordingStatusCallbackMethod=\"POST\" recordingStatusCallbackEvent=\"completed\"/><Say>Goodbye.</Say>",
            xml(greeting),
            xml(callback)
        ),
    };
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{body}</Response>")
}

/// The voice [`Telephony`] adapter.
#[derive(Clone, Debug)]
pub struct TwilioVoice {
    http: SafeHttp,
    base_url: String,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

fn failure(e: OutboundError) -> TelephonyError {
    match e {
        OutboundError::Status(code) if code == 429 || code >= 500 => {
            TelephonyError::Unavailable(format!("status {code}"))
        }
        OutboundError::Status(code) => TelephonyError::Refused(format!("status {code}")),
        OutboundError::Refused(why) => TelephonyError::Refused(why),
        OutboundError::Failed(why) => TelephonyError::Unavailable(why),
    }
}

impl TwilioVoice {
    /// Calls the API at `base_url` (e.g. `https://api.twilio.com`)
    /// through `http`, whose policy allows only that host.
    pub fn new(http: SafeHttp, base_url: String) -> Self {
        Self { http, base_url }
    }

    fn url(&self, account: &TelephonyAccount, rest: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{rest}",
            self.base_url.trim_end_matches('/'),
            account.account_sid
        )
    }

    fn auth(account: &TelephonyAccount) -> [(&'static str, String); 1] {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            account.account_sid,
            account.auth_token.expose_secret()
        ));
        [("authorization", format!("Basic {credentials}"))]
    }

    async fn place(
        &self,
        account: &TelephonyAccount,
        to: &Phi<String>,
        script: &Script,
        callbacks: &Callbacks,
    ) -> Result<ProviderSid, TelephonyError> {
        let twiml = twiml(script);
        let mut form = vec![
            ("To", to.expose_phi().as_str()),
            ("From", account.caller_number.as_str()),
            ("Twiml", twiml.as_str()),
        ];
        if let Some(status) = &callbacks.status {
            form.extend([
                ("StatusCallback", status.as_str()),
                ("StatusCallbackMethod", "POST"),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "ringing"),
                ("StatusCallbackEvent", "answered"),
                ("StatusCallbackEvent", "completed"),
            ]);
        }
        if let Some(recording) = &callbacks.recording {
            form.extend([
                ("Record", "true"),
                ("RecordingStatusCallback", recording.as_str()),
                ("RecordingStatusCallbackMethod", "POST"),
                ("RecordingStatusCallbackEvent", "completed"),
            ]);
        }
        let answer = self
            .http
            .post_form_read(
                &self.url(account, "Calls.json"),
                &Self::auth(account),
                &form,
            )
            .await
            .map_err(failure)?;
        let created: Created = serde_json::from_slice(&answer)
            .map_err(|_| TelephonyError::Unavailable("the answer names no call".into()))?;
        ProviderSid::parse(&created.sid)
            .ok_or_else(|| TelephonyError::Unavailable("the answer's call id is malformed".into()))
    }

    async fn redirect(
        &self,
        account: &TelephonyAccount,
        call: &ProviderSid,
        script: &Script,
    ) -> Result<(), TelephonyError> {
        let twiml = twiml(script);
        self.http
            .post_form(
                &self.url(account, &format!("Calls/{call}.json")),
                &Self::auth(account),
                &[("Twiml", twiml.as_str())],
            )
            .await
            .map(|_| ())
            .map_err(failure)
    }

    async fn fetch_recording(
        &self,
        account: &TelephonyAccount,
        recording: &ProviderSid,
    ) -> Result<Vec<u8>, TelephonyError> {
        self.http
            .get(
                &self.url(account, &format!("Recordings/{recording}.wav")),
                &Self::auth(account),
            )
            .await
            .map_err(failure)
    }

    async fn delete_recording(
        &self,
        account: &TelephonyAccount,
        recording: &ProviderSid,
    ) -> Result<(), TelephonyError> {
        self.http
            .delete(
                &self.url(account, &format!("Recordings/{recording}.json")),
                &Self::auth(account),
            )
            .await
            .map(|_| ())
            .map_err(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The example of Twilio's public documentation ("Validating
    /// requests"): auth token `12345`, this URL and these parameters.
    fn documented() -> (String, Vec<(String, String)>) {
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2".to_owned(),
            params(&[
                ("CallSid", "CA1234567890ABCDE"),
                ("Caller", "+14158675309"),
                ("Digits", "1234"),
                ("From", "+14158675309"),
                ("To", "+18005551212"),
            ]),
        )
    }

    #[test]
    fn the_documented_signature_verifies_in_any_parameter_order() {
        let (url, mut p) = documented();
        assert!(signature_valid(
            "12345",
            &url,
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        p.reverse();
        assert!(signature_valid(
            "12345",
            &url,
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert_eq!(sign("12345", &url, &p), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let (url, p) = documented();
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        // Another token, another host (a Host header an attacker set),
        // another scheme, a changed or added or dropped parameter.
        assert!(!signature_valid("54321", &url, &p, good));
        assert!(!signature_valid(
            "12345",
            "https://attacker.example/myapp.php?foo=1&bar=2",
            &p,
            good
        ));
        assert!(!signature_valid(
            "12345",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &p,
            good
        ));
        let mut changed = p.clone();
        changed[2].1 = "1235".to_owned();
        assert!(!signature_valid("12345", &url, &changed, good));
        let mut added = p.clone();
        added.push(("CallStatus".to_owned(), "completed".to_owned()));
        assert!(!signature_valid("12345", &url, &added, good));
        assert!(!signature_valid("12345", &url, &p[1..], good));
        // Garbage, empty and truncated signatures.
        for bad in ["", "not base64!", "RSOYDt4T1cUTdK1PDd93", "AAAA"] {
            assert!(!signature_valid("12345", &url, &p, bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_local_provider_places_nothing_but_answers_like_one() {
        let account = TelephonyAccount {
            account_sid: ProviderSid::parse("AClocal").unwrap_or_else(|| unreachable!()),
            auth_token: "local-token-0123456789".to_owned().into(),
            caller_number: "+16175550100".into(),
            bot_stream_url: "wss://bot.example/media".into(),
            front_desk_number: None,
            calling_hours: carapace_clinical::appointment::ivr::CallingHours::DEFAULT,
        };
        let local = VoiceProvider::Local(LocalVoice);
        let to = Phi::new("+18005550199".to_owned());
        let script = Script::Transfer { number: to.clone() };
        let call = local
            .place(&account, &to, &script, &Callbacks::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(call.as_str().starts_with("CA") && call.as_str().len() == 34);
        let audio = local
            .fetch_recording(&account, &call)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            carapace_clinical::speech::sniff(&audio).map(|(_, ms)| ms),
            Some(1000)
        );
        let (url, p) = documented();
        let signed = sign("local-token-0123456789", &url, &p);
        assert!(local.signature_valid(&account, &url, &p, &signed));
        assert!(!local.signature_valid(&account, &url, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn twiml_escapes_what_it_is_given() {
        let script = Script::Transfer {
            number: Phi::new("+1 617\"/><Play>x</Play>".to_owned()),
        };
        let doc = twiml(&script);
        assert!(!doc.contains("<Play>"), "{doc}");
        assert!(doc.starts_with("<?xml") && doc.ends_with("</Response>"));
        let task = carapace_clinical::verification::TaskId::generate();
        let stream = twiml(&Script::BotStream {
            url: "wss://bot.example/media?a=1&b=2".to_owned(),
            task,
        });
        assert!(stream.contains("url=\"wss://bot.example/media?a=1&amp;b=2\""));
        assert!(stream.contains(&format!("value=\"{task}\"")));
    }
}

/// A provider for development: no call is placed and no network is used.
/// Calls and recordings get provider-shaped ids, a recording is a second
/// of silence, and callbacks are checked exactly as Twilio's are (sign
/// them with the auth token set for the organization, e.g. with a Twilio
/// helper library's request validator). Production refuses it.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalVoice;

fn local_sid(prefix: &str) -> Result<ProviderSid, TelephonyError> {
    ProviderSid::parse(&format!("{prefix}{}", uuid::Uuid::new_v4().simple()))
        .ok_or_else(|| TelephonyError::Unavailable("id".into()))
}

/// `seconds` of 8 kHz 16-bit mono PCM silence as a WAV file (the local
/// provider's recordings; the test stand-in serves the same).
pub fn silent_wav(seconds: u32) -> Vec<u8> {
    let data_len = seconds.saturating_mul(16_000);
    let mut out = Vec::with_capacity(44 + usize::try_from(data_len).unwrap_or(0));
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + usize::try_from(data_len).unwrap_or(0), 0);
    out
}

/// The configured voice provider.
#[derive(Clone, Debug)]
pub enum VoiceProvider {
    /// [`TwilioVoice`].
    Twilio(TwilioVoice),
    /// [`LocalVoice`].
    Local(LocalVoice),
}

impl Telephony for VoiceProvider {
    async fn place(
        &self,
        account: &TelephonyAccount,
        to: &Phi<String>,
        script: &Script,
        callbacks: &Callbacks,
    ) -> Result<ProviderSid, TelephonyError> {
        match self {
            Self::Twilio(p) => p.place(account, to, script, callbacks).await,
            Self::Local(_) => {
                let sid = local_sid("CA")?;
                tracing::info!(call = %sid, script = ?script, "local telephony: call recorded, none placed");
                Ok(sid)
            }
        }
    }

    async fn redirect(
        &self,
        account: &TelephonyAccount,
        call: &ProviderSid,
        script: &Script,
    ) -> Result<(), TelephonyError> {
        match self {
            Self::Twilio(p) => p.redirect(account, call, script).await,
            Self::Local(_) => {
                tracing::info!(call = %call, script = ?script, "local telephony: call redirected");
                Ok(())
            }
        }
    }

    async fn fetch_recording(
        &self,
        account: &TelephonyAccount,
        recording: &ProviderSid,
    ) -> Result<Vec<u8>, TelephonyError> {
        match self {
            Self::Twilio(p) => p.fetch_recording(account, recording).await,
            Self::Local(_) => Ok(silent_wav(1)),
        }
    }

    async fn delete_recording(
        &self,
        account: &TelephonyAccount,
        recording: &ProviderSid,
    ) -> Result<(), TelephonyError> {
        match self {
            Self::Twilio(p) => p.delete_recording(account, recording).await,
            Self::Local(_) => Ok(()),
        }
    }

    fn answer(&self, script: &Script) -> (&'static str, String) {
        ("text/xml", twiml(script))
    }

    fn signature_valid(
        &self,
        account: &TelephonyAccount,
        url: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> bool {
        signature_valid(account.auth_token.expose_secret(), url, params, signature)
    }
}
