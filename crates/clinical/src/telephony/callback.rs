//! The provider's callbacks: verified first, then parsed, then processed
//! once ([`receive_callback`]).

use carapace_audit::{Access, SecurityEvent, SecurityEventKind, SecurityEventSink};
use carapace_phi_crypto::Phi;

use super::{
    CallRepository, CallState, Delivery, ProviderSid, Telephony, TelephonyAccount, limits,
};
use crate::ClinicalError;

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
}

/// Which callback a request claims to be (the route it came to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackKind {
    /// A status callback.
    Status,
    /// A recording-status callback.
    Recording,
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
            CallbackKind::Recording => {
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

/// Processes one inbound callback for `access`'s organization (the system
/// acting in it): the signature over the request's URL and parameters is checked
/// against the organization's auth token before anything else; then the
/// callback is parsed and processed exactly once. A status moves the call
/// and its task; a recording is fetched from the provider (bounded in
/// size and length), sealed, stored with its task and deleted at the
/// provider.
pub async fn receive_callback<T: Telephony, C: CallRepository>(
    telephony: &T,
    calls: &C,
    events: &dyn SecurityEventSink,
    access: &Access,
    inbound: Inbound<'_>,
) -> Result<(), WebhookRefusal> {
    let Inbound {
        kind,
        url,
        params,
        signature,
    } = inbound;
    let ctx = access.tenant();
    let Some(account) = calls.account(ctx).await? else {
        return Err(refuse(events, access, "no telephony account").await);
    };
    let Some(signature) = signature else {
        return Err(refuse(events, access, "unsigned callback").await);
    };
    if params.len() > limits::PARAMS_MAX
        || !telephony.signature_valid(&account, url, params, signature)
    {
        return Err(refuse(events, access, "bad signature").await);
    }
    match Callback::parse(kind, params) {
        Some(Callback::Status { call, state }) => {
            let event = format!("status:{}", state.as_str());
            match calls.apply_status(access, &call, &event, state).await? {
                Delivery::Processed => Ok(()),
                Delivery::Replay => Err(refuse(events, access, "replayed callback").await),
                Delivery::UnknownCall => Err(WebhookRefusal::UnknownCall),
            }
        }
        Some(Callback::Recording {
            call,
            recording,
            duration_secs,
        }) => {
            store_recording(
                telephony,
                calls,
                events,
                access,
                &account,
                (&call, &recording, duration_secs),
            )
            .await
        }
        None => Err(WebhookRefusal::Invalid(
            "not a status or completed-recording callback",
        )),
    }
}

async fn store_recording<T: Telephony, C: CallRepository>(
    telephony: &T,
    calls: &C,
    events: &dyn SecurityEventSink,
    access: &Access,
    account: &TelephonyAccount,
    (call, recording, duration_secs): (&ProviderSid, &ProviderSid, u32),
) -> Result<(), WebhookRefusal> {
    let ctx = access.tenant();
    let Some(found) = calls.find_call(ctx, call).await? else {
        return Err(WebhookRefusal::UnknownCall);
    };
    if calls.recording_stored(ctx, recording).await? {
        return Err(refuse(events, access, "replayed callback").await);
    }
    if duration_secs > limits::RECORDING_SECONDS_MAX {
        return Err(WebhookRefusal::Invalid("the recording is too long"));
    }
    let audio = telephony
        .fetch_recording(account, recording)
        .await
        .map_err(|e| WebhookRefusal::Failed(super::telephony_unavailable(e)))?;
    let audio = Phi::new(audio);
    match calls
        .store_recording(access, &found, recording, duration_secs, &audio)
        .await?
    {
        Delivery::Processed => {}
        Delivery::Replay => return Err(refuse(events, access, "replayed callback").await),
        Delivery::UnknownCall => return Err(WebhookRefusal::UnknownCall),
    }
    // Stored sealed: the provider's copy goes. If deleting fails, the
    // stored row says so and the callback still succeeds (a retry would be
    // a replay); `carapace` operators see `deleted_at_provider` unset.
    if telephony.delete_recording(account, recording).await.is_ok() {
        calls.recording_deleted(access, recording).await?;
    }
    Ok(())
}
