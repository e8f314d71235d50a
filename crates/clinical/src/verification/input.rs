//! What staff and bots send: a task as staff send it, the supervisor's
//! number, payer reference numbers and transcript chunks, each checked.

use carapace_phi_crypto::Phi;
use uuid::Uuid;

use super::{TaskRequest, limits};
use crate::input::text;
use crate::patient::PatientId;
use crate::{ClinicalError, FieldError};

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
