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

impl AssistantSection {
    /// The chat-completions adapter's settings and outbound policy under
    /// `profile`, when the provider is `openai` and complete.
    pub fn openai(&self, profile: Profile) -> Option<(OpenAiSettings, OutboundPolicy)> {
        if self.provider != "openai" {
            return None;
        }
        let base_url = self.url.clone()?;
        let policy = api_policy(
            &base_url,
            profile,
            self.allow_loopback,
            Duration::from_secs(60),
            1024 * 1024,
        )?;
        Some((
            OpenAiSettings {
                base_url,
                api_key: self.api_key.clone()?,
                model: self.model.clone(),
            },
            policy,
        ))
    }

    /// The audio adapter's settings and outbound policy under `profile`,
    /// when the speech provider is `openai` and the AI URL and key are set.
    pub fn openai_speech(
        &self,
        profile: Profile,
    ) -> Option<(OpenAiSpeechSettings, OutboundPolicy)> {
        if self.speech_provider != "openai" {
            return None;
        }
        let base_url = self.url.clone()?;
        let policy = api_policy(
            &base_url,
            profile,
            self.allow_loopback,
            Duration::from_secs(60),
            carapace_clinical::speech::limits::AUDIO_BYTES_MAX,
        )?;
        Some((
            OpenAiSpeechSettings {
                base_url,
                api_key: self.api_key.clone()?,
                stt_model: self.stt_model.clone(),
                tts_model: self.tts_model.clone(),
            },
            policy,
        ))
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        match self.speech_provider.as_str() {
            "none" | "local" => {}
            "openai" if self.openai_speech(Profile::Dev).is_some() => {}
            "openai" => p.push(ConfigProblem::new(
                "CARAPACE_SPEECH_PROVIDER",
                "the openai speech provider needs CARAPACE_AI_URL (a URL) and CARAPACE_AI_API_KEY",
            )),
            _ => p.push(ConfigProblem::new(
                "CARAPACE_SPEECH_PROVIDER",
                "must be none, local or openai",
            )),
        }
        match self.provider.as_str() {
            "none" | "local" => {}
            "openai" if self.openai(Profile::Dev).is_some() => {}
            "openai" => p.push(ConfigProblem::new(
                "CARAPACE_AI_URL",
                "the openai provider needs CARAPACE_AI_URL (a URL) and CARAPACE_AI_API_KEY",
            )),
            _ => p.push(ConfigProblem::new(
                "CARAPACE_AI_PROVIDER",
                "must be none, local or openai",
            )),
        }
    }
}
