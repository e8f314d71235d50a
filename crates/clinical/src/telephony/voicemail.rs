//! Voicemail: a call to the organization's number is answered with a
//! greeting and a recording; the message is fetched from the provider,
//! sealed, transcribed where the assistant's agreements allow, attached to
//! the patient whose phone number matches (or left in the organization's
//! inbox) and deleted at the provider.

use std::fmt;
use std::future::Future;

use carapace_audit::Access;
use carapace_phi_crypto::Phi;
use carapace_tenancy::TenantContext;
use time::OffsetDateTime;

use super::{Delivery, ProviderSid};
use crate::ClinicalError;
use crate::patient::PatientId;

carapace_tenancy::entity_id! {
    /// A voicemail's id.
    pub struct VoicemailId;
}

/// What a caller hears before the tone: nothing about any patient.
pub const GREETING: &str =
    "You have reached the clinic's voicemail. Please leave a message after the tone.";

/// Longest message recorded, in seconds.
pub const MESSAGE_SECONDS_MAX: u32 = 180;

/// A stored voicemail.
#[derive(Clone, PartialEq, Eq)]
pub struct Voicemail {
    /// Its id.
    pub id: VoicemailId,
    /// The caller's number, as the provider gave it.
    pub caller: Phi<String>,
    /// The patient whose phone number matches, if exactly one does.
    pub patient: Option<PatientId>,
    /// When the call came in.
    pub received_at: OffsetDateTime,
    /// The message's length, once recorded.
    pub duration_secs: Option<u32>,
    /// What was said, where it could be transcribed.
    pub transcript: Option<Phi<String>>,
    /// When the provider's copy was deleted.
    pub deleted_at_provider: Option<OffsetDateTime>,
}

impl fmt::Debug for Voicemail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Voicemail")
            .field("id", &self.id)
            .field("patient", &self.patient)
            .finish_non_exhaustive()
    }
}

/// Storage of voicemails. Confined to the caller's organization; every
/// access audited in its transaction.
pub trait VoicemailRepository: Send + Sync {
    /// Opens the voicemail of inbound call `call` from `caller`, matched to
    /// the patient with that phone number if exactly one has it
    /// (`voicemail.received`); a replay if the call already has one.
    fn open(
        &self,
        access: &Access,
        call: &ProviderSid,
        caller: &Phi<String>,
    ) -> impl Future<Output = Result<Delivery, ClinicalError>> + Send;

    /// Whether the voicemail of call `call` already holds its recording;
    /// `None`: no voicemail for that call here.
    fn recorded(
        &self,
        ctx: &TenantContext,
        call: &ProviderSid,
    ) -> impl Future<Output = Result<Option<bool>, ClinicalError>> + Send;

    /// Stores the message of call `call`, sealed (`voicemail.recorded`);
    /// a replay if it already holds one.
    fn attach(
        &self,
        access: &Access,
        call: &ProviderSid,
        message: &Message,
    ) -> impl Future<Output = Result<Delivery, ClinicalError>> + Send;

    /// Notes that `recording` was deleted at the provider.
    fn recording_deleted(
        &self,
        access: &Access,
        recording: &ProviderSid,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// The organization's voicemails, newest first, at most 200
    /// (`voicemail.list`).
    fn list(
        &self,
        access: &Access,
    ) -> impl Future<Output = Result<Vec<Voicemail>, ClinicalError>> + Send;

    /// One voicemail (`voicemail.read`).
    fn get(
        &self,
        access: &Access,
        id: VoicemailId,
    ) -> impl Future<Output = Result<Option<Voicemail>, ClinicalError>> + Send;

    /// Its audio, to play (`voicemail.play`: every play recorded).
    fn audio(
        &self,
        access: &Access,
        id: VoicemailId,
    ) -> impl Future<Output = Result<Option<Phi<Vec<u8>>>, ClinicalError>> + Send;
}

/// A recorded message, ready to store.
#[derive(Clone)]
pub struct Message {
    /// The provider's recording id.
    pub recording: ProviderSid,
    /// Its length.
    pub duration_secs: u32,
    /// The audio.
    pub audio: Phi<Vec<u8>>,
    /// Its transcript, where one could be made.
    pub transcript: Option<Phi<String>>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}
