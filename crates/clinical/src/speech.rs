//! Speech to text and text to speech. Audio and text may hold PHI, so they
//! go only to a provider the assistant's rules allow ([`crate::assistant::ai_gate`]:
//! the deployment's and the organization's business associate agreements),
//! and each use records who received what before it leaves Carapace.
//! Audio is recognised by its bytes ([`sniff`]), never by the type the
//! client declares, and bounded in size and length.

use std::future::Future;

use carapace_audit::{Access, Outcome};
use carapace_phi_crypto::Phi;

use crate::access::AuditTrail;
use crate::assistant::{Availability, ai_gate};
use crate::{ClinicalError, FieldError};

/// Limits of speech requests.
pub mod limits {
    /// Largest audio accepted for transcription, in bytes.
    pub const AUDIO_BYTES_MAX: usize = 10 * 1024 * 1024;
    /// Longest audio accepted for transcription, in seconds.
    pub const AUDIO_SECONDS_MAX: u32 = 300;
    /// Longest text to speak, in characters.
    pub const TEXT_MAX: usize = 1000;
}

/// An audio container Carapace recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioFormat {
    /// RIFF/WAVE with PCM samples.
    Wav,
}

impl AudioFormat {
    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
        }
    }

    /// Its usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
        }
    }
}

/// Audio with its (sniffed) format and length.
#[derive(Clone, PartialEq, Eq)]
pub struct Audio {
    /// The bytes (PHI: a voice).
    pub bytes: Phi<Vec<u8>>,
    /// What they are.
    pub format: AudioFormat,
}

impl std::fmt::Debug for Audio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audio")
            .field("format", &self.format)
            .field("bytes", &self.bytes.expose_phi().len())
            .finish()
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The format of `bytes` and their length in milliseconds, read from the
/// bytes themselves: a RIFF/WAVE file with a PCM `fmt ` chunk and a `data`
/// chunk whose size fits the file. Anything else: `None`.
pub fn sniff(bytes: &[u8]) -> Option<(AudioFormat, u64)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let (mut at, mut byte_rate, mut data) = (12usize, None, None);
    while at + 8 <= bytes.len() {
        let id = bytes.get(at..at + 4)?;
        let size = usize::try_from(u32_at(bytes, at + 4)?).ok()?;
        let body = at + 8;
        match id {
            b"fmt " => {
                let format = u16_at(bytes, body)?;
                let channels = u16_at(bytes, body + 2)?;
                let rate = u32_at(bytes, body + 4)?;
                if format != 1 || channels == 0 || rate == 0 {
                    return None;
                }
                byte_rate = Some(u64::from(u32_at(bytes, body + 8)?));
            }
            b"data" => {
                if body + size > bytes.len() {
                    return None;
                }
                data = Some(u64::try_from(size).ok()?);
                break;
            }
            _ => {}
        }
        at = body.checked_add(size)?.checked_add(size % 2)?;
    }
    let (rate, data) = (byte_rate.filter(|r| *r > 0)?, data?);
    Some((AudioFormat::Wav, data.saturating_mul(1000) / rate))
}

/// `bytes` as audio Carapace may transcribe: a recognised format (415
/// `unsupported_audio` otherwise), at most [`limits::AUDIO_SECONDS_MAX`]
/// long and not empty.
pub fn audio(bytes: Vec<u8>) -> Result<Audio, ClinicalError> {
    let Some((format, millis)) = sniff(&bytes) else {
        return Err(ClinicalError::Refused {
            code: "unsupported_audio",
            detail: "the body is not audio Carapace accepts (PCM WAV)",
        });
    };
    let seconds_max = u64::from(limits::AUDIO_SECONDS_MAX);
    if millis == 0 || millis > seconds_max * 1000 {
        return Err(ClinicalError::Invalid(vec![FieldError::new(
            "audio",
            format!("must be between 0 and {seconds_max} seconds long"),
        )]));
    }
    Ok(Audio {
        bytes: Phi::new(bytes),
        format,
    })
}

/// Text to speak: 1 to [`limits::TEXT_MAX`] characters, no control
/// characters but newlines.
pub fn speech_text(raw: &str) -> Result<Phi<String>, ClinicalError> {
    let t = raw.trim();
    let n = t.chars().count();
    if n == 0 || n > limits::TEXT_MAX || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ClinicalError::Invalid(vec![FieldError::new(
            "text",
            format!("must be 1 to {} characters", limits::TEXT_MAX),
        )]));
    }
    Ok(Phi::new(t.to_owned()))
}

/// Why a speech provider failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// It could not be reached, timed out or answered an error.
    #[error("speech provider unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(_: SpeechError) -> ClinicalError {
    ClinicalError::Unavailable {
        code: "speech_unavailable",
        detail: "the speech provider did not answer in time or failed",
    }
}

/// Speech to text.
pub trait SpeechToText: Send + Sync {
    /// Who receives the audio (named in each disclosure record).
    fn name(&self) -> String;

    /// The words spoken in `audio`.
    fn transcribe(
        &self,
        audio: &Audio,
    ) -> impl Future<Output = Result<Phi<String>, SpeechError>> + Send;
}

/// Text to speech.
pub trait TextToSpeech: Send + Sync {
    /// Who receives the text (named in each disclosure record).
    fn name(&self) -> String;

    /// `text`, spoken, as audio.
    fn synthesize(
        &self,
        text: &Phi<String>,
    ) -> impl Future<Output = Result<Audio, SpeechError>> + Send;
}

/// Transcribes `audio` for `access`, if the assistant's rules allow it
/// (`availability`): the disclosure to the provider is recorded before the
/// audio leaves (`speech.transcribe`), or nothing is sent.
pub async fn transcribe<S: SpeechToText, T: AuditTrail>(
    stt: &S,
    trail: &T,
    access: &Access,
    availability: Availability,
    audio: &Audio,
) -> Result<Phi<String>, ClinicalError> {
    ai_gate(availability)?;
    let sent = access
        .event("speech.transcribe", "audio", None, Outcome::Allowed)
        .with_phi_fields(&["audio"])
        .with_detail(format!(
            "sent to {}: {} bytes of {}",
            stt.name(),
            audio.bytes.expose_phi().len(),
            audio.format.media_type()
        ));
    trail.record(&sent).await?;
    stt.transcribe(audio).await.map_err(unavailable)
}

/// Speaks `text` for `access`, under the same rules as [`transcribe`]
/// (`speech.synthesize`).
pub async fn synthesize<S: TextToSpeech, T: AuditTrail>(
    tts: &S,
    trail: &T,
    access: &Access,
    availability: Availability,
    text: &Phi<String>,
) -> Result<Audio, ClinicalError> {
    ai_gate(availability)?;
    let sent = access
        .event("speech.synthesize", "text", None, Outcome::Allowed)
        .with_phi_fields(&["text"])
        .with_detail(format!(
            "sent to {}: {} characters",
            tts.name(),
            text.expose_phi().chars().count()
        ));
    trail.record(&sent).await?;
    tts.synthesize(text).await.map_err(unavailable)
}

#[cfg(test)]
pub(crate) mod tests;
