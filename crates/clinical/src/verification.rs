//! Prior-authorization verification: a staff user asks for a payer to be
//! called about a patient's procedures; a bot (a service account) claims
//! the task, reads the minimal view ([`bot_view`], the one function that
//! decides what a bot sees), reports progress, uploads the call transcript
//! in chunks and completes or fails the task. Tasks move through
//! [`TaskStatus`]; any other move is a conflict.

mod bot_view;
mod input;

use std::fmt;
use std::future::Future;

use carapace_audit::Access;
use carapace_phi_crypto::Phi;
use carapace_tenancy::SubjectId;
use time::OffsetDateTime;

carapace_tenancy::entity_id! {
    /// A verification task's id.
    pub struct TaskId;
}

use crate::ClinicalError;
use crate::patient::PatientId;

pub use bot_view::{BOT_VIEW_FIELDS, BotView, SUPERVISOR_FIELD, bot_view, may_escalate};
pub use input::{TaskInput, reference_number, supervisor_phone, transcript_chunk};

/// Limits of task fields and transcripts.
pub mod limits {
    /// Longest payer name or plan, in characters.
    pub const NAME_MAX: usize = 200;
    /// Most procedure codes on one task.
    pub const CODES_MAX: usize = 20;
    /// Longest payer reference number.
    pub const REFERENCE_MAX: usize = 64;
    /// Largest transcript chunk, in bytes.
    pub const CHUNK_MAX: usize = 16 * 1024;
    /// Most chunks (so a transcript is at most 256 KiB).
    pub const CHUNKS_MAX: u32 = 16;
    /// Longest failure reason.
    pub const REASON_MAX: usize = 500;
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Waiting for a bot.
    Pending,
    /// A bot has it.
    Claimed,
    /// The bot is on the phone with the payer.
    Calling,
    /// Verified; the payer's reference number is recorded.
    Completed,
    /// The call did not verify it.
    Failed,
    /// Withdrawn by staff.
    Cancelled,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 6] = [
        Self::Pending,
        Self::Claimed,
        Self::Calling,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Calling => "calling",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether a task may go from `self` to `to`: pending → claimed
    /// (a bot) or cancelled (staff); claimed → calling, failed or
    /// cancelled; calling → completed or failed. The rest is final.
    pub fn may_become(self, to: Self) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Pending, Claimed)
                | (Pending, Cancelled)
                | (Claimed, Calling)
                | (Claimed, Failed)
                | (Claimed, Cancelled)
                | (Calling, Completed)
                | (Calling, Failed)
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `from` → `to`, or a 409-mapped conflict.
pub fn check_transition(from: TaskStatus, to: TaskStatus) -> Result<(), ClinicalError> {
    if from.may_become(to) {
        Ok(())
    } else {
        Err(ClinicalError::Conflict {
            code: "invalid_transition",
            detail: "the task cannot move to that status from where it is",
        })
    }
}

/// What a task asks: the payer and the procedures (all PHI with the
/// patient, sealed at rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRequest {
    /// The patient.
    pub patient: PatientId,
    /// The insurer.
    pub payer_name: Phi<String>,
    /// The insurer's phone number to call.
    pub payer_phone: Phi<String>,
    /// The patient's plan.
    pub plan: Phi<String>,
    /// CPT/HCPCS codes to verify.
    pub procedure_codes: Phi<Vec<String>>,
}

/// A stored task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// What it asks.
    pub request: TaskRequest,
    /// Where it stands.
    pub status: TaskStatus,
    /// The bot that claimed it.
    pub claimed_by: Option<SubjectId>,
    /// The payer's reference number, once given.
    pub reference_number: Option<Phi<String>>,
    /// Transcript chunks received.
    pub transcript_chunks: u32,
    /// Who asked.
    pub created_by: SubjectId,
    /// When.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// A bot's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// On the phone.
    Calling,
    /// Verified, with the payer's reference number.
    Completed(Phi<String>),
    /// Not verified, with a reason.
    Failed(Phi<String>),
}

impl Progress {
    /// The status it moves to.
    pub fn status(&self) -> TaskStatus {
        match self {
            Self::Calling => TaskStatus::Calling,
            Self::Completed(_) => TaskStatus::Completed,
            Self::Failed(_) => TaskStatus::Failed,
        }
    }
}

/// What escalating needs of a bot's task: its status and, only while it
/// may escalate, the organization's supervisor number.
pub type EscalationTarget = (TaskStatus, Option<Phi<String>>);

/// Storage of tasks and transcripts. Confined to the caller's
/// organization; every call audited in its transaction, bots' as the
/// service account. `None`: no such task (or patient) here; a bot's calls
/// also answer `None` for a task another bot claimed.
pub trait VerificationRepository: Send + Sync {
    /// Stores a pending task (`verification.create`).
    fn create(
        &self,
        access: &Access,
        request: &TaskRequest,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// One task (`verification.read`).
    fn get(
        &self,
        access: &Access,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// Tasks, newest first, optionally in one status (`verification.list`).
    fn list(
        &self,
        access: &Access,
        status: Option<TaskStatus>,
    ) -> impl Future<Output = Result<Vec<Task>, ClinicalError>> + Send;

    /// Staff withdraw a task (`verification.cancel`).
    fn cancel(
        &self,
        access: &Access,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// The bot takes a pending task (`verification.claim`).
    fn claim(
        &self,
        access: &Access,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// The bot's minimal view of its task (`verification.bot_view`).
    fn bot_view(
        &self,
        access: &Access,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<BotView>, ClinicalError>> + Send;

    /// The bot reports progress on its task (`verification.progress`).
    fn report(
        &self,
        access: &Access,
        id: TaskId,
        progress: &Progress,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// The bot appends transcript chunk `seq` (0, 1, …) of its task while
    /// calling (`verification.transcript`).
    fn append_transcript(
        &self,
        access: &Access,
        id: TaskId,
        seq: u32,
        text: &Phi<String>,
    ) -> impl Future<Output = Result<Option<u32>, ClinicalError>> + Send;

    /// The organization's supervisor number, for its administrators
    /// (`verification.settings_read`).
    fn supervisor_phone(
        &self,
        access: &Access,
    ) -> impl Future<Output = Result<Option<Phi<String>>, ClinicalError>> + Send;

    /// Sets or removes the organization's supervisor number
    /// (`verification.settings_update`).
    fn set_supervisor_phone(
        &self,
        access: &Access,
        phone: Option<&Phi<String>>,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// The whole transcript of a task, for staff (`verification.transcript_read`).
    fn transcript(
        &self,
        access: &Access,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<Phi<String>>, ClinicalError>> + Send;

    /// For the bot's own task `id`: its status and, only while it may
    /// escalate ([`may_escalate`]), the organization's supervisor number,
    /// read for the provider to transfer the call to (never shown to the
    /// bot; the escalation's own event records the disclosure).
    fn escalation_target(
        &self,
        access: &Access,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<EscalationTarget>, ClinicalError>> + Send;
}

#[cfg(test)]
mod tests;
