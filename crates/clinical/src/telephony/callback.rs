//! The provider's callbacks: verified first, then parsed, then processed
//! once ([`Line::receive`]).

use carapace_audit::{Access, SecurityEvent, SecurityEventKind, SecurityEventSink};
use carapace_phi_crypto::Phi;

use super::voicemail::{GREETING, MESSAGE_SECONDS_MAX, Message, VoicemailRepository};
use super::{
    CallRepository, CallState, Delivery, ProviderSid, Script, Telephony, TelephonyAccount, limits,
};
use crate::ClinicalError;
use crate::access::AuditTrail;
use crate::appointment::ivr::{AnswerOutcome, ReminderAnswer, ReminderAnswers};
use crate::assistant::Availability;
use crate::speech::{SpeechToText, audio, transcribe};

/// A callback, as its (verified) parameters say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    /// Call `call` is now in `state`.
    Status {
        /// The call.
        call: ProviderSid,
        /// Its state.
        state: CallState,
    },
    /// Recording `recording` of call `call` is ready.
    Recording {
        /// The call.
        call: ProviderSid,
        /// The recording.
        recording: ProviderSid,
        /// Its length in seconds.
        duration_secs: u32,
    },
    /// Call `call` from `caller` came in to the organization's number.
    Inbound {
        /// The call.
        call: ProviderSid,
        /// Who is calling.
        caller: Phi<String>,
    },
}

/// Which callback a request claims to be (the route it came to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackKind {
    /// A status callback.
    Status,
    /// A recording-status callback of a call Carapace placed.
    Recording,
    /// A call to the organization's number.
    Inbound,
    /// A recording-status callback of a voicemail.
    Voicemail,
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Callback {
    /// The callback of `kind` that `params` describe, if they describe
    /// one. A recording callback counts only once the recording is
    /// `completed`.
    pub fn parse(kind: CallbackKind, params: &[(String, String)]) -> Option<Self> {
        let call = ProviderSid::parse(param(params, "CallSid")?)?;
        match kind {
            CallbackKind::Status => Some(Self::Status {
                call,
                state: CallState::parse(param(params, "CallStatus")?)?,
            }),
            CallbackKind::Inbound => {
                let caller = param(params, "From")?;
                let ok = (1..=32).contains(&caller.len())
                    && caller
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-() .".contains(c));
                ok.then(|| Self::Inbound {
                    call,
                    caller: Phi::new(caller.to_owned()),
                })
            }
            CallbackKind::Recording | CallbackKind::Voicemail => {
                if param(params, "RecordingStatus")? != "completed" {
                    return None;
                }
                Some(Self::Recording {
                    call,
                    recording: ProviderSid::parse(param(params, "RecordingSid")?)?,
                    duration_secs: param(params, "RecordingDuration")?.parse().ok()?,
                })
            }
        }
    }
}

/// An inbound callback request as it arrived.
#[derive(Clone, Copy, Debug)]
pub struct Inbound<'a> {
    /// Which callback the route takes.
    pub kind: CallbackKind,
    /// The configured public URL of the route (with its query), never one
    /// built from the Host header.
    pub url: &'a str,
    /// The form parameters, in any order.
    pub params: &'a [(String, String)],
    /// The signature header, if any.
    pub signature: Option<&'a str>,
}

/// Why a callback was not processed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookRefusal {
    /// Unsigned, badly signed, for an organization without an account,
    /// or a replay (403; recorded as a security event).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Signed, but not a callback this route processes (422).
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// Signed, about a call this organization did not place (404).
    #[error("unknown call")]
    UnknownCall,
    /// Storage, the audit log or the provider failed (5xx: the provider
    /// retries, nothing is marked processed).
    #[error(transparent)]
    Failed(#[from] ClinicalError),
}

async fn refuse(
    events: &dyn SecurityEventSink,
    access: &Access,
    why: &'static str,
) -> WebhookRefusal {
    let mut event = SecurityEvent::new(
        SecurityEventKind::WebhookRejected,
        access.org(),
        access.tenant().actor().clone(),
        why,
    );
    event.origin = access.origin().clone();
    match events.emit(event).await {
        Ok(()) => WebhookRefusal::Forbidden(why),
        Err(e) => WebhookRefusal::Failed(e.into()),
    }
}

/// What takes the provider's callbacks for an organization: the ports and,
/// where voicemails may be transcribed, the speech provider with the
/// agreements in force.
pub struct Line<'a, T, C, V, S, A> {
    /// The provider.
    pub telephony: &'a T,
    /// Calls placed.
    pub calls: &'a C,
    /// Voicemails.
    pub voicemails: &'a V,
    /// Speech to text for voicemails, with what the assistant's rules say
    /// of it here (none: messages are kept without a transcript).
    pub speech: Option<(&'a S, Availability)>,
    /// Where the transcription's disclosure is recorded.
    pub trail: &'a A,
    /// Where refusals are recorded.
    pub events: &'a dyn SecurityEventSink,
    /// The public URL of the voicemail recording callback.
    pub voicemail_url: &'a str,
}

impl<T, C, V, S, A> Line<'_, T, C, V, S, A>
where
    T: Telephony,
    C: CallRepository,
    V: VoicemailRepository,
    S: SpeechToText,
    A: AuditTrail,
{
    /// Processes one inbound callback for `access`'s organization (the
    /// system acting in it): the signature over the request's URL and
    /// parameters is checked against the organization's auth token before
    /// anything else; then the callback is parsed and processed exactly
    /// once. A status moves the call and its task; a recording is fetched
    /// from the provider (bounded in size and length), sealed, stored and
    /// deleted at the provider; an inbound call is answered with the
    /// voicemail script (the answer).
    pub async fn receive(
        &self,
        access: &Access,
        inbound: Inbound<'_>,
    ) -> Result<Option<Script>, WebhookRefusal> {
        let account = self.verify(access, inbound).await?;
        let (kind, params, events) = (inbound.kind, inbound.params, self.events);
        match Callback::parse(kind, params) {
            Some(Callback::Status { call, state }) => {
                let event = format!("status:{}", state.as_str());
                match self
                    .calls
                    .apply_status(access, &call, &event, state)
                    .await?
                {
                    Delivery::Processed => Ok(None),
                    Delivery::Replay => Err(refuse(events, access, "replayed callback").await),
                    Delivery::UnknownCall => Err(WebhookRefusal::UnknownCall),
                }
            }
            Some(Callback::Recording {
                call,
                recording,
                duration_secs,
            }) if kind == CallbackKind::Recording => self
                .store_recording(access, &account, (&call, &recording, duration_secs))
                .await
                .map(|()| None),
            Some(Callback::Recording {
                call,
                recording,
                duration_secs,
            }) => self
                .voicemail(access, &account, (&call, &recording, duration_secs))
                .await
                .map(|()| None),
            Some(Callback::Inbound { call, caller }) => {
                match self.voicemails.open(access, &call, &caller).await? {
                    Delivery::Processed => Ok(Some(Script::Voicemail {
                        greeting: GREETING.to_owned(),
                        callback: self.voicemail_url.to_owned(),
                        max_seconds: MESSAGE_SECONDS_MAX,
                    })),
                    Delivery::Replay | Delivery::UnknownCall => {
                        Err(refuse(events, access, "replayed callback").await)
                    }
                }
            }
            None => Err(WebhookRefusal::Invalid("not a callback this route takes")),
        }
    }

    /// The organization's account, if `inbound` is signed with its token
    /// over the configured URL; otherwise the refusal, recorded.
    pub async fn verify(
        &self,
        access: &Access,
        inbound: Inbound<'_>,
    ) -> Result<TelephonyAccount, WebhookRefusal> {
        let events = self.events;
        let Some(account) = self.calls.account(access.tenant()).await? else {
            return Err(refuse(events, access, "no telephony account").await);
        };
        let Some(signature) = inbound.signature else {
            return Err(refuse(events, access, "unsigned callback").await);
        };
        if inbound.params.len() > limits::PARAMS_MAX
            || !self
                .telephony
                .signature_valid(&account, inbound.url, inbound.params, signature)
        {
            return Err(refuse(events, access, "bad signature").await);
        }
        Ok(account)
    }

    /// The patient's key press on reminder call `reminder` (signed, like
    /// every callback, over a URL that names the reminder): recorded once
    /// and acted on ([`ReminderAnswers`]); the answer is what the caller
    /// hears next. A key that means nothing changes nothing.
    pub async fn answer_reminder<R: ReminderAnswers>(
        &self,
        answers: &R,
        access: &Access,
        inbound: Inbound<'_>,
        reminder: uuid::Uuid,
    ) -> Result<Script, WebhookRefusal> {
        let account = self.verify(access, inbound).await?;
        let digits = inbound
            .params
            .iter()
            .find(|(n, _)| n == "Digits")
            .map(|(_, v)| v.as_str());
        let Some(answer) = digits.and_then(ReminderAnswer::from_digits) else {
            return Ok(Script::Say {
                text: "No change was made. Please contact your clinic. Goodbye.".to_owned(),
                then_dial: None,
            });
        };
        match answers.answer(access, reminder, answer).await? {
            AnswerOutcome::Recorded => {}
            AnswerOutcome::Replay => {
                return Err(refuse(self.events, access, "replayed callback").await);
            }
            AnswerOutcome::Unknown => return Err(WebhookRefusal::UnknownCall),
        }
        Ok(match (answer, account.front_desk_number) {
            (ReminderAnswer::Clinic, Some(desk)) => Script::Say {
                text: answer.reply().to_owned(),
                then_dial: Some(desk),
            },
            (ReminderAnswer::Clinic, None) => Script::Say {
                text: "Please call your clinic. Goodbye.".to_owned(),
                then_dial: None,
            },
            (answer, _) => Script::Say {
                text: answer.reply().to_owned(),
                then_dial: None,
            },
        })
    }

    /// What `bytes` say, where the agreements allow transcribing and the
    /// audio is one Carapace reads; otherwise none (a message is never lost
    /// for want of a transcript).
    async fn transcript_of(&self, access: &Access, bytes: &[u8]) -> Option<Phi<String>> {
        let (stt, availability) = self.speech?;
        let sound = audio(bytes.to_vec()).ok()?;
        transcribe(stt, self.trail, access, availability, &sound)
            .await
            .ok()
    }

    /// Recording `recording` fetched from the provider (bounded in
    /// length), with its transcript where one may be made.
    async fn fetch_message(
        &self,
        access: &Access,
        account: &TelephonyAccount,
        recording: &ProviderSid,
        duration_secs: u32,
    ) -> Result<Message, WebhookRefusal> {
        if duration_secs > limits::RECORDING_SECONDS_MAX {
            return Err(WebhookRefusal::Invalid("the recording is too long"));
        }
        let bytes = self
            .telephony
            .fetch_recording(account, recording)
            .await
            .map_err(|e| WebhookRefusal::Failed(super::telephony_unavailable(e)))?;
        let transcript = self.transcript_of(access, &bytes).await;
        Ok(Message {
            recording: recording.clone(),
            duration_secs,
            audio: Phi::new(bytes),
            transcript,
        })
    }

    /// What storing a recording came to, as the callback's answer.
    async fn stored(&self, access: &Access, delivery: Delivery) -> Result<(), WebhookRefusal> {
        match delivery {
            Delivery::Processed => Ok(()),
            Delivery::Replay => Err(refuse(self.events, access, "replayed callback").await),
            Delivery::UnknownCall => Err(WebhookRefusal::UnknownCall),
        }
    }

    async fn store_recording(
        &self,
        access: &Access,
        account: &TelephonyAccount,
        (call, recording, duration_secs): (&ProviderSid, &ProviderSid, u32),
    ) -> Result<(), WebhookRefusal> {
        let (telephony, calls, events) = (self.telephony, self.calls, self.events);
        let ctx = access.tenant();
        let Some(found) = calls.find_call(ctx, call).await? else {
            return Err(WebhookRefusal::UnknownCall);
        };
        if calls.recording_stored(ctx, recording).await? {
            return Err(refuse(events, access, "replayed callback").await);
        }
        let message = self
            .fetch_message(access, account, recording, duration_secs)
            .await?;
        self.stored(
            access,
            calls.store_recording(access, &found, &message).await?,
        )
        .await?;
        // Stored sealed: the provider's copy goes. If deleting fails, the
        // stored row says so (`deleted_at_provider` unset) and the callback
        // still succeeds (a retry would be a replay).
        if telephony.delete_recording(account, recording).await.is_ok() {
            calls.recording_deleted(access, recording).await?;
        }
        Ok(())
    }

    async fn voicemail(
        &self,
        access: &Access,
        account: &TelephonyAccount,
        (call, recording, duration_secs): (&ProviderSid, &ProviderSid, u32),
    ) -> Result<(), WebhookRefusal> {
        match self.voicemails.recorded(access.tenant(), call).await? {
            None => return Err(WebhookRefusal::UnknownCall),
            Some(true) => return Err(refuse(self.events, access, "replayed callback").await),
            Some(false) => {}
        }
        let message = self
            .fetch_message(access, account, recording, duration_secs)
            .await?;
        self.stored(
            access,
            self.voicemails.attach(access, call, &message).await?,
        )
        .await?;
        if self
            .telephony
            .delete_recording(account, recording)
            .await
            .is_ok()
        {
            self.voicemails.recording_deleted(access, recording).await?;
        }
        Ok(())
    }
}
