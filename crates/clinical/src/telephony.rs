//! Telephony: the calls Carapace places for an organization and the
//! provider's signed callbacks about them.
//!
//! Staff start the payer call of a verification task a bot has claimed
//! ([`start_verification_call`]); the provider connects the call's audio
//! to the bot's media stream, and its status callbacks move the task
//! ([`after_call`], the one function that decides how); the bot may hand
//! the call to the organization's supervisor ([`escalate`]); the call's
//! recording is fetched from the provider, sealed, attached to the task and
//! deleted at the provider ([`Line::receive`]); a call to the
//! organization's number reaches voicemail ([`voicemail`]).
//!
//! Every inbound callback is verified against the organization's own
//! (sealed) auth token before anything else is read from it; a callback
//! that is unsigned, badly signed or already processed is refused and
//! recorded as a security event. The ports: [`Telephony`] (the provider's
//! REST API and webhook signature) and [`CallRepository`] (storage).

mod callback;
mod input;
mod types;
pub mod voicemail;

use std::future::Future;

use carapace_audit::Access;
use carapace_phi_crypto::Phi;
use carapace_tenancy::TenantContext;

use crate::ClinicalError;
use crate::verification::{TaskId, TaskStatus, VerificationRepository, may_escalate};

pub use callback::{Callback, CallbackKind, Inbound, Line, WebhookRefusal};
pub use input::AccountInput;
pub use types::{
    CallRecord, CallSlot, CallState, Callbacks, Delivery, ProviderSid, Script, TelephonyAccount,
    TelephonyError, limits,
};

/// The provider's REST API and webhook protocol. Adapters: a
/// Twilio-compatible one (through the SSRF-safe client) and the local
/// stand-in for development.
pub trait Telephony: Send + Sync {
    /// Places a call from the account's number to `to`, following
    /// `script`, with the provider's callbacks to `callbacks`.
    fn place(
        &self,
        account: &TelephonyAccount,
        to: &Phi<String>,
        script: &Script,
        callbacks: &Callbacks,
    ) -> impl Future<Output = Result<ProviderSid, TelephonyError>> + Send;

    /// Makes call `call` follow `script` from now on (a transfer).
    fn redirect(
        &self,
        account: &TelephonyAccount,
        call: &ProviderSid,
        script: &Script,
    ) -> impl Future<Output = Result<(), TelephonyError>> + Send;

    /// The audio of `recording`, fetched from the provider's own host
    /// (never a URL a callback names), at most [`limits::RECORDING_BYTES_MAX`].
    fn fetch_recording(
        &self,
        account: &TelephonyAccount,
        recording: &ProviderSid,
    ) -> impl Future<Output = Result<Vec<u8>, TelephonyError>> + Send;

    /// Deletes `recording` at the provider.
    fn delete_recording(
        &self,
        account: &TelephonyAccount,
        recording: &ProviderSid,
    ) -> impl Future<Output = Result<(), TelephonyError>> + Send;

    /// `script` as the answer to an inbound call: its content type and
    /// body (TwiML for a Twilio-compatible provider).
    fn answer(&self, script: &Script) -> (&'static str, String);

    /// Whether `signature` signs the callback to `url` with `params` under
    /// `account`'s auth token (compared in constant time).
    fn signature_valid(
        &self,
        account: &TelephonyAccount,
        url: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> bool;
}

/// Storage of the organization's telephony account, its calls, the
/// callbacks processed and the recordings. Confined to the caller's
/// organization; writes audited in their transaction.
pub trait CallRepository: Send + Sync {
    /// The organization's account (its auth token unsealed), if set. Read
    /// by the system to check callbacks: records no event.
    fn account(
        &self,
        ctx: &TenantContext,
    ) -> impl Future<Output = Result<Option<TelephonyAccount>, ClinicalError>> + Send;

    /// Replaces the organization's account (`telephony.configure`).
    fn set_account(
        &self,
        access: &Access,
        account: &TelephonyAccount,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// The call of task `task` that has not ended, if any.
    fn active_call(
        &self,
        ctx: &TenantContext,
        task: TaskId,
    ) -> impl Future<Output = Result<Option<CallRecord>, ClinicalError>> + Send;

    /// Reserves task `task`'s one live call before it is placed. A
    /// conflict (`call_in_progress`) if the task has a call that has not
    /// ended or a slot reserved less than [`CallSlot::ABANDONED_AFTER`]
    /// ago; an older slot is dropped. Records no event: nothing is placed
    /// yet.
    fn reserve_call(
        &self,
        ctx: &TenantContext,
        task: TaskId,
    ) -> impl Future<Output = Result<CallSlot, ClinicalError>> + Send;

    /// Records that call `call` was placed for task `task` in `slot`
    /// (`verification.call`). A conflict if the slot is gone (it was
    /// abandoned and another call reserved since).
    fn record_call(
        &self,
        access: &Access,
        task: TaskId,
        slot: &CallSlot,
        call: &ProviderSid,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// Gives back `slot`, whose call could not be placed: the task is as
    /// it was before the attempt.
    fn release_call(
        &self,
        ctx: &TenantContext,
        slot: &CallSlot,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// Records the escalation of call `call` of task `task` to the
    /// supervisor (`verification.escalate`), as the bot.
    fn record_escalation(
        &self,
        access: &Access,
        task: TaskId,
        call: &ProviderSid,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// In one transaction: marks the status callback `event` of `call` as
    /// processed (a replay if it already was), sets the call's state, and
    /// moves its task as [`after_call`] decides (`verification.call_status`).
    fn apply_status(
        &self,
        access: &Access,
        call: &ProviderSid,
        event: &str,
        state: CallState,
    ) -> impl Future<Output = Result<Delivery, ClinicalError>> + Send;

    /// The call `call`, if this organization placed it.
    fn find_call(
        &self,
        ctx: &TenantContext,
        call: &ProviderSid,
    ) -> impl Future<Output = Result<Option<CallRecord>, ClinicalError>> + Send;

    /// Whether `recording` is already stored.
    fn recording_stored(
        &self,
        ctx: &TenantContext,
        recording: &ProviderSid,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// Stores the recording of `call` and its transcript, if any, sealed,
    /// attached to its task (`verification.recording`), marking the
    /// callback processed (a replay if it already was).
    fn store_recording(
        &self,
        access: &Access,
        call: &CallRecord,
        recording: &voicemail::Message,
    ) -> impl Future<Output = Result<Delivery, ClinicalError>> + Send;

    /// Notes that `recording` was deleted at the provider
    /// (`verification.recording_deleted`).
    fn recording_deleted(
        &self,
        access: &Access,
        recording: &ProviderSid,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;
}

/// The task move a call in `call` state makes on a task in `task` state,
/// with the failure reason when it fails it: the call going live puts a
/// claimed task on the phone; a call that could not be made or ended
/// before the bot reported the task done fails it. Anything else: no move.
pub fn after_call(task: TaskStatus, call: CallState) -> Option<(TaskStatus, Option<&'static str>)> {
    use TaskStatus::{Calling, Claimed, Failed};
    match (task, call) {
        (Claimed, CallState::InProgress) => Some((Calling, None)),
        (Claimed | Calling, CallState::Busy) => Some((Failed, Some("the payer's line was busy"))),
        (Claimed | Calling, CallState::NoAnswer) => {
            Some((Failed, Some("the payer did not answer")))
        }
        (Claimed | Calling, CallState::Failed | CallState::Canceled) => {
            Some((Failed, Some("the call could not be placed")))
        }
        (Calling, CallState::Completed) => {
            Some((Failed, Some("the call ended before the task was completed")))
        }
        _ => None,
    }
}

fn telephony_unavailable(_: TelephonyError) -> ClinicalError {
    ClinicalError::Unavailable {
        code: "telephony_unavailable",
        detail: "the telephony provider did not answer in time or refused; nothing was changed",
    }
}

async fn account_of<C: CallRepository>(
    calls: &C,
    ctx: &TenantContext,
) -> Result<TelephonyAccount, ClinicalError> {
    calls.account(ctx).await?.ok_or(ClinicalError::Conflict {
        code: "telephony_not_configured",
        detail: "the organization has no telephony account",
    })
}

/// Staff start the payer call of task `task`, which a bot must have
/// claimed: the provider calls the payer from the organization's number
/// and connects the audio to the bot's media stream. Nothing is stored
/// when the provider fails (the task stays claimed).
pub async fn start_verification_call<T, C, V>(
    telephony: &T,
    calls: &C,
    tasks: &V,
    access: &Access,
    task: TaskId,
    callbacks: &Callbacks,
) -> Result<ProviderSid, ClinicalError>
where
    T: Telephony,
    C: CallRepository,
    V: VerificationRepository,
{
    let found = tasks
        .get(access, task)
        .await?
        .ok_or(ClinicalError::NotFound)?;
    if found.status != TaskStatus::Claimed {
        return Err(ClinicalError::Conflict {
            code: "not_claimed",
            detail: "a call is placed for a task a bot has claimed and is not yet calling on",
        });
    }
    let ctx = access.tenant();
    let account = account_of(calls, ctx).await?;
    // The slot first: of two requests racing for one task, the second is
    // refused here, before the payer's phone rings twice.
    let slot = calls.reserve_call(ctx, task).await?;
    let script = Script::BotStream {
        url: account.bot_stream_url.clone(),
        task,
    };
    let placed = telephony
        .place(&account, &found.request.payer_phone, &script, callbacks)
        .await;
    match placed {
        Ok(sid) => {
            calls.record_call(access, task, &slot, &sid).await?;
            Ok(sid)
        }
        Err(e) => {
            calls.release_call(ctx, &slot).await?;
            Err(telephony_unavailable(e))
        }
    }
}

/// The bot working task `task` hands its live call to the organization's
/// supervisor. Only while the task is `calling` ([`may_escalate`]) and the
/// organization has a supervisor number; the number never reaches the bot.
pub async fn escalate<T, C, V>(
    telephony: &T,
    calls: &C,
    tasks: &V,
    access: &Access,
    task: TaskId,
) -> Result<(), ClinicalError>
where
    T: Telephony,
    C: CallRepository,
    V: VerificationRepository,
{
    let (status, supervisor) = tasks
        .escalation_target(access, task)
        .await?
        .ok_or(ClinicalError::NotFound)?;
    if !may_escalate(status) {
        return Err(ClinicalError::Conflict {
            code: "invalid_transition",
            detail: "a call is escalated only while the task is calling",
        });
    }
    let supervisor = supervisor.ok_or(ClinicalError::Conflict {
        code: "no_supervisor",
        detail: "the organization has no supervisor number",
    })?;
    let ctx = access.tenant();
    let call = calls
        .active_call(ctx, task)
        .await?
        .filter(|c| !CallSlot::is_placeholder(&c.sid))
        .ok_or(ClinicalError::Conflict {
            code: "no_call",
            detail: "the task has no live call placed by Carapace",
        })?;
    let account = account_of(calls, ctx).await?;
    calls.record_escalation(access, task, &call.sid).await?;
    telephony
        .redirect(
            &account,
            &call.sid,
            &Script::Transfer { number: supervisor },
        )
        .await
        .map_err(telephony_unavailable)
}

#[cfg(test)]
mod tests;
