//! The minimal view of a task that the calling bot sees ([`bot_view`],
//! the one function that decides it).

use std::fmt;

use carapace_phi_crypto::Phi;
use time::Date;

use super::{Task, TaskStatus};
use crate::patient::Patient;

/// Whether a bot working a task in `status` may escalate to the
/// supervisor: only while it is on the phone with the payer. Before the
/// call there is no one to hand over; after it, nothing to escalate.
pub fn may_escalate(status: TaskStatus) -> bool {
    status == TaskStatus::Calling
}

/// What a bot sees of a task: exactly what verifying needs. No address,
/// no contact details of the patient, no notes, no appointments, no other
/// tasks; the supervisor's number only while escalating is allowed
/// ([`may_escalate`]).
#[derive(Clone, PartialEq, Eq)]
pub struct BotView {
    /// The task.
    pub task_id: super::TaskId,
    /// Where it stands (not PHI).
    pub status: TaskStatus,
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
        status: task.status,
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
