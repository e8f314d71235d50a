//! The AI assistant's provider.

use std::time::Duration;

use carapace_infra::assistant::OpenAiSettings;
use carapace_infra::outbound::OutboundPolicy;
use carapace_infra::speech::OpenAiSpeechSettings;
use secrecy::SecretString;

use super::checks::ConfigProblem;
use super::{Profile, api_policy};

/// The AI assistant's provider.
#[derive(Clone, Debug)]
pub struct AssistantSection {
    /// The AI provider: `none` (default: the assistant is off), `local`
    /// (deterministic, development only) or `openai` (an
    /// OpenAI-compatible chat-completions API).
    pub provider: String,
    /// The operator's declaration that a business associate agreement
    /// with the AI provider is signed. Without it the assistant answers
    /// 503, and production refuses to start with a provider set.
    pub baa_signed: bool,
    /// Base URL of the chat-completions API (`https://api.openai.com`).
    pub url: Option<String>,
    /// API key of the chat-completions API.
    pub api_key: Option<SecretString>,
    /// Model name.
    pub model: String,
    /// Let the AI provider be a loopback address (tests; refused in
    /// production).
    pub allow_loopback: bool,
    /// The speech provider (speech to text, text to speech): `none`
    /// (default), `local` (espeak-ng and a transcription stand-in,
    /// development only) or `openai` (the audio API at the AI provider's
    /// URL and key). Under the same agreements as the assistant.
    pub speech_provider: String,
    /// Transcription model (`whisper-1`).
    pub stt_model: String,
    /// Speech model (`tts-1`).
    pub tts_model: String,
}

/// Where and with which key an OpenAI-compatible API is called.
struct OpenAiApi {
    base_url: String,
    api_key: SecretString,
    policy: OutboundPolicy,
}

impl AssistantSection {
    /// The AI URL and key, and the outbound policy for answers of up to
    /// `max_response_bytes`, when `chosen` is `openai` and both are set.
    fn openai_api(
        &self,
        chosen: &str,
        profile: Profile,
        max_response_bytes: usize,
    ) -> Option<OpenAiApi> {
        if chosen != "openai" {
            return None;
        }
        let base_url = self.url.clone()?;
        let policy = api_policy(
            &base_url,
            profile,
            self.allow_loopback,
            Duration::from_secs(60),
            max_response_bytes,
        )?;
        Some(OpenAiApi {
            base_url,
            api_key: self.api_key.clone()?,
            policy,
        })
    }

    /// The chat-completions adapter's settings and outbound policy under
    /// `profile`, when the provider is `openai` and complete.
    pub fn openai(&self, profile: Profile) -> Option<(OpenAiSettings, OutboundPolicy)> {
        let api = self.openai_api(&self.provider, profile, 1024 * 1024)?;
        let settings = OpenAiSettings {
            base_url: api.base_url,
            api_key: api.api_key,
            model: self.model.clone(),
        };
        Some((settings, api.policy))
    }

    /// The audio adapter's settings and outbound policy under `profile`,
    /// when the speech provider is `openai` and the AI URL and key are set.
    pub fn openai_speech(
        &self,
        profile: Profile,
    ) -> Option<(OpenAiSpeechSettings, OutboundPolicy)> {
        let audio_max = carapace_clinical::speech::limits::AUDIO_BYTES_MAX;
        let api = self.openai_api(&self.speech_provider, profile, audio_max)?;
        let settings = OpenAiSpeechSettings {
            base_url: api.base_url,
            api_key: api.api_key,
            stt_model: self.stt_model.clone(),
            tts_model: self.tts_model.clone(),
        };
        Some((settings, api.policy))
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        let choices = [
            (
                "CARAPACE_SPEECH_PROVIDER",
                self.speech_provider.as_str(),
                self.openai_speech(Profile::Dev).is_some(),
                "CARAPACE_SPEECH_PROVIDER",
                "the openai speech provider",
            ),
            (
                "CARAPACE_AI_PROVIDER",
                self.provider.as_str(),
                self.openai(Profile::Dev).is_some(),
                "CARAPACE_AI_URL",
                "the openai provider",
            ),
        ];
        for (variable, chosen, openai_ready, blamed, provider) in choices {
            match chosen {
                "none" | "local" => {}
                "openai" if openai_ready => {}
                "openai" => p.push(ConfigProblem::new(
                    blamed,
                    format!("{provider} needs CARAPACE_AI_URL (a URL) and CARAPACE_AI_API_KEY"),
                )),
                _ => p.push(ConfigProblem::new(
                    variable,
                    "must be none, local or openai",
                )),
            }
        }
    }
}
