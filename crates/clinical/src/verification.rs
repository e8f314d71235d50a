//! Prior-authorization verification: a staff user asks for a payer to be
//! called about a patient's procedures; a bot (a service account) claims
//! the task, reads the minimal view ([`bot_view`], the one function that
//! decides what a bot sees), reports progress, uploads the call transcript
//! in chunks and completes or fails the task. Tasks move through
//! [`TaskStatus`]; any other move is a conflict.

use std::fmt;
use std::future::Future;

use carapace_audit::Access;
use carapace_phi_crypto::Phi;
use carapace_tenancy::SubjectId;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::patient::{Patient, PatientId};
use crate::{ClinicalError, FieldError};

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
    pub id: Uuid,
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

/// A task as staff send it.
#[derive(Clone, Debug, Default)]
pub struct TaskInput {
    /// The patient.
    pub patient_id: Uuid,
    /// 1-200 characters.
    pub payer_name: String,
    /// 7-15 digits with optional `+ ( ) - .` and spaces.
    pub payer_phone: String,
    /// 1-200 characters.
    pub plan: String,
    /// 1-20 CPT/HCPCS codes (3-10 letters, digits or dots).
    pub procedure_codes: Vec<String>,
}

fn text(field: &str, raw: &str, max: usize, errors: &mut Vec<FieldError>) -> Option<String> {
    let t = raw.trim();
    let n = t.chars().count();
    if n == 0 || n > max || t.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
        return None;
    }
    Some(t.to_owned())
}

/// A phone number: 7-15 digits, optionally with `+`, spaces, `-`, `.`,
/// `(`, `)`; at most 32 characters.
fn phone(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let t = raw.trim();
    let digits = t.chars().filter(char::is_ascii_digit).count();
    let allowed = t
        .chars()
        .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
    if t.len() > 32 || !allowed || !(7..=15).contains(&digits) {
        errors.push(FieldError::new(field, "must be a phone number"));
        return None;
    }
    Some(t.to_owned())
}

/// The organization's supervisor number, the one a bot hands a call to
/// when it escalates: a phone number as [`TaskInput::payer_phone`] takes
/// (seed 001 kept it in plaintext patient data, shown to the bot on every
/// call). Sealed at rest as an organization setting.
pub fn supervisor_phone(raw: &str) -> Result<Phi<String>, ClinicalError> {
    let mut errors = Vec::new();
    match phone("supervisor_phone", raw, &mut errors) {
        Some(p) => Ok(Phi::new(p)),
        None => Err(ClinicalError::Invalid(errors)),
    }
}

/// Whether a bot working a task in `status` may escalate to the
/// supervisor: only while it is on the phone with the payer. Before the
/// call there is no one to hand over; after it, nothing to escalate.
pub fn may_escalate(status: TaskStatus) -> bool {
    status == TaskStatus::Calling
}

fn code_ok(c: &str) -> bool {
    (3..=10).contains(&c.len()) && c.chars().all(|x| x.is_ascii_alphanumeric() || x == '.')
}

impl TaskInput {
    /// Validates every field, reporting every problem at once.
    pub fn parse(self) -> Result<TaskRequest, ClinicalError> {
        let mut errors = Vec::new();
        let payer_name = text(
            "payer_name",
            &self.payer_name,
            limits::NAME_MAX,
            &mut errors,
        );
        let payer_phone = phone("payer_phone", &self.payer_phone, &mut errors);
        let plan = text("plan", &self.plan, limits::NAME_MAX, &mut errors);
        let codes: Vec<String> = self
            .procedure_codes
            .iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .collect();
        if codes.is_empty() || codes.len() > limits::CODES_MAX || !codes.iter().all(|c| code_ok(c))
        {
            errors.push(FieldError::new(
                "procedure_codes",
                "must be 1 to 20 codes of 3-10 letters, digits or dots",
            ));
        }
        match (payer_name, payer_phone, plan) {
            (Some(n), Some(p), Some(pl)) if errors.is_empty() => Ok(TaskRequest {
                patient: PatientId::from_uuid(self.patient_id),
                payer_name: Phi::new(n),
                payer_phone: Phi::new(p),
                plan: Phi::new(pl),
                procedure_codes: Phi::new(codes),
            }),
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

/// A payer reference number: 1-64 letters, digits, `-`, `_`, `.`.
pub fn reference_number(raw: &str) -> Result<Phi<String>, ClinicalError> {
    let t = raw.trim();
    if t.is_empty()
        || t.len() > limits::REFERENCE_MAX
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ClinicalError::Invalid(vec![FieldError::new(
            "reference_number",
            "must be 1-64 letters, digits, '-', '_' or '.'",
        )]));
    }
    Ok(Phi::new(t.to_owned()))
}

/// A transcript chunk: non-empty text up to [`limits::CHUNK_MAX`] bytes.
pub fn transcript_chunk(raw: String) -> Result<Phi<String>, ClinicalError> {
    if raw.is_empty() || raw.len() > limits::CHUNK_MAX {
        return Err(ClinicalError::Invalid(vec![FieldError::new(
            "text",
            format!("must be 1 to {} bytes", limits::CHUNK_MAX),
        )]));
    }
    Ok(Phi::new(raw))
}

/// What a bot sees of a task: exactly what verifying needs. No address,
/// no contact details of the patient, no notes, no appointments, no other
/// tasks; the supervisor's number only while escalating is allowed
/// ([`may_escalate`]).
#[derive(Clone, PartialEq, Eq)]
pub struct BotView {
    /// The task.
    pub task_id: Uuid,
    /// Given and family name.
    pub patient_name: Phi<String>,
    /// Date of birth.
    pub birth_date: Phi<Date>,
    /// Insurance member id, if recorded.
    pub member_id: Option<Phi<String>>,
    /// The insurer.
    pub payer_name: Phi<String>,
    /// The number to call.
    pub payer_phone: Phi<String>,
    /// The plan.
    pub plan: Phi<String>,
    /// Codes to verify.
    pub procedure_codes: Phi<Vec<String>>,
    /// The organization's supervisor number, while the task is in a state
    /// that allows escalation and the organization has one.
    pub supervisor_phone: Option<Phi<String>>,
}

impl fmt::Debug for BotView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotView")
            .field("task_id", &self.task_id)
            .finish_non_exhaustive()
    }
}

/// The fields of a [`BotView`], as audit events list them.
pub const BOT_VIEW_FIELDS: [&str; 7] = [
    "patient_name",
    "birth_date",
    "member_id",
    "payer_name",
    "payer_phone",
    "plan",
    "procedure_codes",
];

/// The name of the supervisor's number in audit events, listed beside
/// [`BOT_VIEW_FIELDS`] when a view holds it.
pub const SUPERVISOR_FIELD: &str = "supervisor_phone";

/// The minimal view of `task` about `patient` for the bot that calls,
/// with the organization's `supervisor` number only when the task's status
/// allows escalation.
pub fn bot_view(task: &Task, patient: &Patient, supervisor: Option<&Phi<String>>) -> BotView {
    let d = &patient.demographics;
    BotView {
        task_id: task.id,
        patient_name: Phi::new(format!(
            "{} {}",
            d.given_name.expose_phi(),
            d.family_name.expose_phi()
        )),
        birth_date: d.birth_date.clone(),
        member_id: d.member_id.clone(),
        payer_name: task.request.payer_name.clone(),
        payer_phone: task.request.payer_phone.clone(),
        plan: task.request.plan.clone(),
        procedure_codes: task.request.procedure_codes.clone(),
        supervisor_phone: supervisor.filter(|_| may_escalate(task.status)).cloned(),
    }
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
        id: Uuid,
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
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// The bot takes a pending task (`verification.claim`).
    fn claim(
        &self,
        access: &Access,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// The bot's minimal view of its task (`verification.bot_view`).
    fn bot_view(
        &self,
        access: &Access,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<BotView>, ClinicalError>> + Send;

    /// The bot reports progress on its task (`verification.progress`).
    fn report(
        &self,
        access: &Access,
        id: Uuid,
        progress: &Progress,
    ) -> impl Future<Output = Result<Option<Task>, ClinicalError>> + Send;

    /// The bot appends transcript chunk `seq` (0, 1, …) of its task while
    /// calling (`verification.transcript`).
    fn append_transcript(
        &self,
        access: &Access,
        id: Uuid,
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
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Phi<String>>, ClinicalError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::{Demographics, PatientInput};

    fn patient() -> Patient {
        let demographics: Demographics = PatientInput {
            given_name: "Jane".into(),
            family_name: "Roe".into(),
            birth_date: "1980-02-03".into(),
            member_id: Some("M-778".into()),
            phone: Some("+1 555 010 0100".into()),
            email: Some("jane@example.org".into()),
            sex: None,
        }
        .parse(time::macros::date!(2026 - 01 - 01))
        .unwrap_or_else(|e| panic!("{e:?}"));
        Patient {
            id: PatientId::generate(),
            org: carapace_tenancy::OrgId::generate(),
            demographics,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn input() -> TaskInput {
        TaskInput {
            patient_id: Uuid::nil(),
            payer_name: "Acme Health".into(),
            payer_phone: "+1 800 555 0199".into(),
            plan: "Gold PPO".into(),
            procedure_codes: vec!["99213".into(), "j3490".into()],
        }
    }

    #[test]
    fn tasks_move_only_along_the_state_machine() {
        use TaskStatus::*;
        let allowed = [
            (Pending, Claimed),
            (Pending, Cancelled),
            (Claimed, Calling),
            (Claimed, Failed),
            (Claimed, Cancelled),
            (Calling, Completed),
            (Calling, Failed),
        ];
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                assert_eq!(
                    from.may_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        assert_eq!(
            check_transition(Completed, Calling).err().map(|e| e.code()),
            Some("invalid_transition")
        );
    }

    #[test]
    fn task_input_is_checked_field_by_field() {
        let ok = input().parse().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            ok.procedure_codes.expose_phi(),
            &vec!["99213".to_owned(), "J3490".to_owned()]
        );
        let bad = TaskInput {
            payer_name: String::new(),
            payer_phone: "call me".into(),
            plan: "x".repeat(201),
            procedure_codes: vec!["<script>".into()],
            ..input()
        };
        match bad.parse() {
            Err(ClinicalError::Invalid(e)) => assert_eq!(
                e.into_iter().map(|e| e.field).collect::<Vec<_>>(),
                vec!["payer_name", "payer_phone", "plan", "procedure_codes"]
            ),
            other => panic!("{other:?}"),
        }
        assert!(reference_number("REF-2026.11_7").is_ok());
        assert!(reference_number("no spaces please").is_err());
        assert!(transcript_chunk(String::new()).is_err());
        assert!(transcript_chunk("x".repeat(limits::CHUNK_MAX + 1)).is_err());
    }

    #[test]
    fn the_bot_view_holds_exactly_what_verifying_needs() {
        let p = patient();
        let task = Task {
            id: Uuid::now_v7(),
            request: input().parse().unwrap_or_else(|e| panic!("{e:?}")),
            status: TaskStatus::Claimed,
            claimed_by: None,
            reference_number: None,
            transcript_chunks: 0,
            created_by: SubjectId::parse("staff").unwrap_or_else(|_| unreachable!()),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let BotView {
            task_id,
            patient_name,
            birth_date,
            member_id,
            payer_name,
            payer_phone,
            plan,
            procedure_codes,
            supervisor_phone,
        } = bot_view(&task, &p, None);
        assert_eq!(task_id, task.id);
        assert_eq!(patient_name.expose_phi(), "Jane Roe");
        assert_eq!(birth_date, p.demographics.birth_date);
        assert_eq!(
            member_id.map(|m| m.expose_phi().clone()),
            Some("M-778".into())
        );
        assert_eq!(payer_name.expose_phi(), "Acme Health");
        assert_eq!(payer_phone.expose_phi(), "+1 800 555 0199");
        assert_eq!(plan.expose_phi(), "Gold PPO");
        assert_eq!(procedure_codes.expose_phi().len(), 2);
        assert_eq!(supervisor_phone, None);
        assert_eq!(BOT_VIEW_FIELDS.len(), 7, "one name per field above");
        let printed = format!("{:?}", bot_view(&task, &p, None));
        for secret in ["Jane", "555", "M-778", "jane@", "Acme"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn the_supervisor_is_offered_only_while_escalating_is_allowed() {
        let p = patient();
        let supervisor =
            supervisor_phone(" +1 (617) 555-0123 ").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(supervisor.expose_phi(), "+1 (617) 555-0123");
        for status in TaskStatus::ALL {
            let task = Task {
                id: Uuid::now_v7(),
                request: input().parse().unwrap_or_else(|e| panic!("{e:?}")),
                status,
                claimed_by: None,
                reference_number: None,
                transcript_chunks: 0,
                created_by: SubjectId::parse("staff").unwrap_or_else(|_| unreachable!()),
                created_at: OffsetDateTime::UNIX_EPOCH,
                updated_at: OffsetDateTime::UNIX_EPOCH,
            };
            let view = bot_view(&task, &p, Some(&supervisor));
            assert_eq!(
                view.supervisor_phone.is_some(),
                status == TaskStatus::Calling,
                "{status}"
            );
            assert_eq!(may_escalate(status), status == TaskStatus::Calling);
            assert!(!format!("{view:?}").contains("0123"));
        }
        for bad in [
            "",
            "call me",
            "12345",
            "+1 617 555 0123 4567 8901",
            "617\n5550123",
        ] {
            match supervisor_phone(bad) {
                Err(ClinicalError::Invalid(errors)) => {
                    assert_eq!(errors[0].field, "supervisor_phone", "{bad:?}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
