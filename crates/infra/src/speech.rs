//! Speech adapters. [`LocalSpeech`]: text to speech with espeak-ng from
//! the distribution's packages (run without a shell, the text on its
//! standard input, bounded in time and output) and a deterministic
//! stand-in for speech to text (no model is downloaded at run time);
//! production refuses it. [`OpenAiSpeech`]: an OpenAI-compatible API
//! (`/v1/audio/transcriptions`, `/v1/audio/speech`) through the SSRF-safe
//! client.

use std::time::Duration;

use carapace_clinical::speech::{
    Audio, AudioFormat, SpeechError, SpeechToText, TextToSpeech, audio, limits, sniff,
};
use carapace_phi_crypto::Phi;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::outbound::SafeHttp;

/// How long espeak-ng may take.
const SYNTHESIS_TIMEOUT: Duration = Duration::from_secs(10);

/// A streamed WAV's header with its sizes set to what `bytes` hold: a
/// program writing WAV to a pipe cannot seek back to fill them in.
fn fix_wav_sizes(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(data) = bytes.windows(4).take(256).position(|w| w == b"data") else {
        return bytes;
    };
    let total = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let data_len = u32::try_from(bytes.len().saturating_sub(data + 8)).unwrap_or(u32::MAX);
    if bytes.len() >= data + 8 && bytes.get(0..4) == Some(b"RIFF") {
        bytes[4..8].copy_from_slice(&total.saturating_sub(8).to_le_bytes());
        bytes[data + 4..data + 8].copy_from_slice(&data_len.to_le_bytes());
    }
    bytes
}

/// Local speech: espeak-ng speaks; transcription is a deterministic
/// stand-in that names the audio's length (development and tests only).
#[derive(Clone, Debug)]
pub struct LocalSpeech {
    program: String,
}

impl Default for LocalSpeech {
    fn default() -> Self {
        Self {
            program: "espeak-ng".to_owned(),
        }
    }
}

impl LocalSpeech {
    /// Speaks with `program` (an espeak-ng binary) instead of the one on
    /// the `PATH`.
    pub fn with_program(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
        }
    }

    async fn run(&self, text: &str) -> Result<Vec<u8>, SpeechError> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(["--stdout", "-v", "en-us"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SpeechError::Unavailable(format!("espeak-ng: {e}")))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| SpeechError::Unavailable("espeak-ng: no stdin".into()))?;
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| SpeechError::Unavailable(format!("espeak-ng: {e}")))?;
        drop(stdin);
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| SpeechError::Unavailable("espeak-ng: no stdout".into()))?;
        let mut out = Vec::new();
        let limit = u64::try_from(limits::AUDIO_BYTES_MAX).unwrap_or(u64::MAX) + 1;
        let read = async {
            (&mut stdout).take(limit).read_to_end(&mut out).await?;
            child.wait().await
        };
        let status = tokio::time::timeout(SYNTHESIS_TIMEOUT, read)
            .await
            .map_err(|_| SpeechError::Unavailable("espeak-ng timed out".into()))?
            .map_err(|e| SpeechError::Unavailable(format!("espeak-ng: {e}")))?;
        if !status.success() || out.len() > limits::AUDIO_BYTES_MAX {
            return Err(SpeechError::Unavailable(format!("espeak-ng: {status}")));
        }
        Ok(fix_wav_sizes(out))
    }
}

impl TextToSpeech for LocalSpeech {
    fn name(&self) -> String {
        "local:espeak-ng".to_owned()
    }

    async fn synthesize(&self, text: &Phi<String>) -> Result<Audio, SpeechError> {
        let wav = self.run(text.expose_phi()).await?;
        audio(wav).map_err(|_| SpeechError::Unavailable("espeak-ng wrote no usable WAV".into()))
    }
}

impl SpeechToText for LocalSpeech {
    fn name(&self) -> String {
        "local:stand-in".to_owned()
    }

    async fn transcribe(&self, audio: &Audio) -> Result<Phi<String>, SpeechError> {
        let millis = sniff(audio.bytes.expose_phi()).map_or(0, |(_, m)| m);
        Ok(Phi::new(format!(
            "(local transcription) {}.{:03} seconds of audio",
            millis / 1000,
            millis % 1000
        )))
    }
}

/// Where and how to reach an OpenAI-compatible audio API.
#[derive(Clone)]
pub struct OpenAiSpeechSettings {
    /// Base URL (`https://api.openai.com`); `/v1/audio/…` is added.
    pub base_url: String,
    /// API key (bearer).
    pub api_key: SecretString,
    /// Transcription model (`whisper-1`).
    pub stt_model: String,
    /// Speech model (`tts-1`).
    pub tts_model: String,
}

impl std::fmt::Debug for OpenAiSpeechSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSpeechSettings")
            .field("base_url", &self.base_url)
            .field("stt_model", &self.stt_model)
            .field("tts_model", &self.tts_model)
            .finish_non_exhaustive()
    }
}

/// The OpenAI-compatible audio adapter.
#[derive(Clone, Debug)]
pub struct OpenAiSpeech {
    http: SafeHttp,
    settings: OpenAiSpeechSettings,
}

impl OpenAiSpeech {
    /// A provider at `settings` through `http` (its policy allows that
    /// host only and answers up to the audio limit).
    pub fn new(http: SafeHttp, settings: OpenAiSpeechSettings) -> Self {
        Self { http, settings }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/audio/{path}",
            self.settings.base_url.trim_end_matches('/')
        )
    }

    fn auth(&self) -> [(&'static str, String); 1] {
        [(
            "authorization",
            format!("Bearer {}", self.settings.api_key.expose_secret()),
        )]
    }
}

/// A `multipart/form-data` body of text `fields` and one file: the body
/// and its content type.
fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (Vec<u8>, String) {
    let boundary = format!("carapace-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let (filename, media_type, bytes) = file;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {media_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

impl SpeechToText for OpenAiSpeech {
    fn name(&self) -> String {
        format!("openai-compatible:{}", self.settings.stt_model)
    }

    async fn transcribe(&self, audio: &Audio) -> Result<Phi<String>, SpeechError> {
        let filename = format!("audio.{}", audio.format.extension());
        let (body, content_type) = multipart(
            &[
                ("model", self.settings.stt_model.as_str()),
                ("response_format", "json"),
            ],
            (
                &filename,
                audio.format.media_type(),
                audio.bytes.expose_phi(),
            ),
        );
        let answer = self
            .http
            .post_read(
                &self.url("transcriptions"),
                &content_type,
                &self.auth(),
                body,
            )
            .await
            .map_err(|e| SpeechError::Unavailable(e.to_string()))?;
        let parsed: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|_| SpeechError::Unavailable("not JSON".into()))?;
        parsed["text"]
            .as_str()
            .map(|t| Phi::new(t.to_owned()))
            .ok_or_else(|| SpeechError::Unavailable("no text in the answer".into()))
    }
}

impl TextToSpeech for OpenAiSpeech {
    fn name(&self) -> String {
        format!("openai-compatible:{}", self.settings.tts_model)
    }

    async fn synthesize(&self, text: &Phi<String>) -> Result<Audio, SpeechError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "model": self.settings.tts_model,
            "input": text.expose_phi(),
            "voice": "alloy",
            "response_format": "wav",
        }))
        .map_err(|e| SpeechError::Unavailable(e.to_string()))?;
        let answer = self
            .http
            .post_json_read(&self.url("speech"), &self.auth(), body)
            .await
            .map_err(|e| SpeechError::Unavailable(e.to_string()))?;
        let answer = fix_wav_sizes(answer);
        audio(answer)
            .ok()
            .filter(|a| a.format == AudioFormat::Wav)
            .ok_or_else(|| SpeechError::Unavailable("the answer is not WAV audio".into()))
    }
}

/// The configured provider.
#[derive(Clone, Debug)]
pub enum Speech {
    /// [`LocalSpeech`].
    Local(LocalSpeech),
    /// [`OpenAiSpeech`].
    OpenAi(OpenAiSpeech),
}

impl SpeechToText for Speech {
    fn name(&self) -> String {
        match self {
            Self::Local(p) => SpeechToText::name(p),
            Self::OpenAi(p) => SpeechToText::name(p),
        }
    }

    async fn transcribe(&self, audio: &Audio) -> Result<Phi<String>, SpeechError> {
        match self {
            Self::Local(p) => p.transcribe(audio).await,
            Self::OpenAi(p) => p.transcribe(audio).await,
        }
    }
}

impl TextToSpeech for Speech {
    fn name(&self) -> String {
        match self {
            Self::Local(p) => TextToSpeech::name(p),
            Self::OpenAi(p) => TextToSpeech::name(p),
        }
    }

    async fn synthesize(&self, text: &Phi<String>) -> Result<Audio, SpeechError> {
        match self {
            Self::Local(p) => p.synthesize(text).await,
            Self::OpenAi(p) => p.synthesize(text).await,
        }
    }
}
