//! The telephony vocabulary: provider ids, call states, scripts, the
//! organization's account.

use std::fmt;

use carapace_phi_crypto::Phi;
use secrecy::SecretString;

use crate::appointment::ivr::CallingHours;
use crate::verification::TaskId;

/// Limits of what telephony accepts.
pub mod limits {
    /// Longest provider id (call, recording, account), in characters.
    pub const SID_MAX: usize = 64;
    /// Largest recording fetched, in bytes (about 10 minutes of 8 kHz
    /// 16-bit mono WAV).
    pub const RECORDING_BYTES_MAX: usize = 10 * 1024 * 1024;
    /// Longest recording stored, in seconds.
    pub const RECORDING_SECONDS_MAX: u32 = 600;
    /// Most parameters one callback may carry.
    pub const PARAMS_MAX: usize = 64;
    /// Longest URL (bot stream), in characters.
    pub const URL_MAX: usize = 500;
}

/// An id the provider gave a call, recording or account (`CA…`, `RE…`,
/// `AC…`): 2 to 64 ASCII letters and digits. Not PHI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProviderSid(String);

impl ProviderSid {
    /// `s` if it has the shape of a provider id.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (2..=limits::SID_MAX).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Self(s.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Task `task`'s one live call, reserved before the provider is asked to
/// place it ([`CallRepository::reserve_call`](super::CallRepository::reserve_call)):
/// of two requests racing to call for one task, one reserves and places
/// the call, the other is refused before any call is placed. Until the
/// call is recorded the slot stands in the call's place under a
/// placeholder id (`PL` and 32 hex digits, never a provider's: Twilio's
/// call ids start with `CA`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSlot(ProviderSid);

impl CallSlot {
    /// How long a reservation holds when its call was neither recorded
    /// nor released (the request placing it was dropped midway): twelve
    /// times the provider's 10-second request timeout. An older one is
    /// dropped by the next reservation for its task.
    pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

    /// What every placeholder id starts with (no provider id does).
    pub const PREFIX: &'static str = "PL";

    /// A new slot; `nonce` makes its placeholder id unique.
    pub fn new(nonce: uuid::Uuid) -> Self {
        Self(ProviderSid(format!("{}{}", Self::PREFIX, nonce.simple())))
    }

    /// The placeholder id the slot is stored under.
    pub fn placeholder(&self) -> &ProviderSid {
        &self.0
    }

    /// Whether `sid` is a slot's placeholder rather than a placed call.
    pub fn is_placeholder(sid: &ProviderSid) -> bool {
        sid.0.starts_with(Self::PREFIX)
    }
}

impl fmt::Display for ProviderSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a call stands, as the provider reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Accepted, not yet ringing (`queued`, `initiated`).
    Queued,
    /// Ringing.
    Ringing,
    /// Answered, live.
    InProgress,
    /// Ended after being answered.
    Completed,
    /// The line was busy.
    Busy,
    /// No one answered.
    NoAnswer,
    /// The call could not be made.
    Failed,
    /// Cancelled before it was answered.
    Canceled,
}

impl CallState {
    /// Every state.
    pub const ALL: [CallState; 8] = [
        Self::Queued,
        Self::Ringing,
        Self::InProgress,
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Canceled,
    ];

    /// The provider's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// The state the provider names `s` (`initiated` is `queued`).
    pub fn parse(s: &str) -> Option<Self> {
        if s == "initiated" {
            return Some(Self::Queued);
        }
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the call is over.
    pub fn ended(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::NoAnswer | Self::Failed | Self::Canceled
        )
    }
}

/// What a call does once answered. The adapter renders it in the
/// provider's language (TwiML).
#[derive(Clone, PartialEq, Eq)]
pub enum Script {
    /// Record the call and connect its audio to the bot's media stream at
    /// `url`, naming the task (and nothing else) as a stream parameter.
    BotStream {
        /// The bot's `wss://` media-stream endpoint.
        url: String,
        /// The task the call is for.
        task: TaskId,
    },
    /// Hand the call to `number` (the supervisor).
    Transfer {
        /// Where to.
        number: Phi<String>,
    },
    /// Say `text` and wait for one key, sent to `answer_url` (a reminder
    /// call's menu).
    Menu {
        /// What is said.
        text: String,
        /// Where the key goes (the provider signs the request).
        answer_url: String,
    },
    /// Say `text`, then hand the call to `number` if there is one, or
    /// hang up.
    Say {
        /// What is said.
        text: String,
        /// Where to transfer the caller after it.
        then_dial: Option<String>,
    },
    /// Say `greeting`, then record a message of at most `max_seconds`,
    /// reporting the recording to `callback`.
    Voicemail {
        /// What the caller hears first.
        greeting: String,
        /// The recording callback's public URL.
        callback: String,
        /// Longest message.
        max_seconds: u32,
    },
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BotStream { task, .. } => {
                f.debug_struct("BotStream").field("task", task).finish()
            }
            Self::Transfer { .. } => f.write_str("Transfer"),
            Self::Menu { .. } => f.write_str("Menu"),
            Self::Say { .. } => f.write_str("Say"),
            Self::Voicemail { max_seconds, .. } => f
                .debug_struct("Voicemail")
                .field("max_seconds", max_seconds)
                .finish_non_exhaustive(),
        }
    }
}

/// Where the provider reports on a call: absolute URLs under the server's
/// configured public URL. A call without a recording callback is not
/// recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callbacks {
    /// Status changes.
    pub status: Option<String>,
    /// Finished recordings (none: the call is not recorded).
    pub recording: Option<String>,
}

/// An organization's account at the provider. The auth token signs the
/// provider's callbacks and authenticates Carapace's requests: sealed at
/// rest, never shown.
#[derive(Clone)]
pub struct TelephonyAccount {
    /// The account id (`AC…`).
    pub account_sid: ProviderSid,
    /// The auth token.
    pub auth_token: SecretString,
    /// The organization's number calls come from (E.164).
    pub caller_number: String,
    /// The bot's `wss://` media-stream endpoint.
    pub bot_stream_url: String,
    /// The front desk's number, where a reminder call's key 3 goes.
    pub front_desk_number: Option<String>,
    /// When reminder calls may ring, in the appointment's zone.
    pub calling_hours: CallingHours,
}

impl fmt::Debug for TelephonyAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelephonyAccount")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

/// A call Carapace placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The provider's id.
    pub sid: ProviderSid,
    /// The task it is for.
    pub task: TaskId,
    /// Its last reported state.
    pub state: CallState,
}

/// What became of a callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Processed now.
    Processed,
    /// Already processed before: a replay.
    Replay,
    /// No such call in this organization.
    UnknownCall,
}

/// Why the provider did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TelephonyError {
    /// It could not be reached, timed out or failed (5xx, 429).
    #[error("telephony provider unavailable: {0}")]
    Unavailable(String),
    /// It refused the request (4xx) or the request broke the outbound
    /// policy.
    #[error("telephony provider refused: {0}")]
    Refused(String),
}
