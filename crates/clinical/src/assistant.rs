//! The AI assistant: who may use it (both the deployment's and the
//! organization's business associate agreements, [`ai_gate`]), what leaves
//! Carapace ([`prompt`]: every text passes a [`Redactor`], which replaces
//! the identifiers of the patient in context and every identifier a pattern
//! finds in free text by placeholders, and puts them back in the answer),
//! and the ports to the provider and to the stored conversations. A
//! conversation belongs to one user and at most one patient context,
//! chosen when it starts: nothing said about one patient is sent with a
//! message about another.

mod conversation;

pub use conversation::Conversations;

use std::future::Future;

use carapace_audit::Access;
use carapace_phi_crypto::Phi;

use crate::patient::{Demographics, PatientId};
use crate::{ClinicalError, FieldError};

/// Longest message, in characters.
pub const MESSAGE_MAX: usize = 4000;
/// Earlier turns sent with a new message.
pub const HISTORY_TURNS: u64 = 20;

/// Who said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    /// The Carapace user.
    User,
    /// The model.
    Assistant,
}

impl Speaker {
    /// Stable name (also the chat-completions role).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// The speaker named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Assistant]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A message: 1-4000 characters, no control characters but newlines.
pub fn message(raw: &str) -> Result<Phi<String>, ClinicalError> {
    let t = raw.trim();
    let n = t.chars().count();
    if n == 0 || n > MESSAGE_MAX || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ClinicalError::Invalid(vec![FieldError::new(
            "message",
            format!("must be 1 to {MESSAGE_MAX} characters"),
        )]));
    }
    Ok(Phi::new(t.to_owned()))
}

/// What the AI surface may do here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// The deployment has a provider configured.
    pub deployment_enabled: bool,
    /// The deployment's operator declared a signed BAA with the provider.
    pub deployment_baa: bool,
    /// The organization declared its BAA.
    pub org_baa: bool,
}

/// Whether the assistant may be used: off (503 `ai_disabled`), no
/// deployment BAA (503 `deployment_baa_missing`), no organization BAA (403
/// `org_baa_missing`).
pub fn ai_gate(a: Availability) -> Result<(), ClinicalError> {
    if !a.deployment_enabled {
        return Err(ClinicalError::Unavailable {
            code: "ai_disabled",
            detail: "this deployment has no AI provider",
        });
    }
    if !a.deployment_baa {
        return Err(ClinicalError::Unavailable {
            code: "deployment_baa_missing",
            detail: "the deployment has no business associate agreement with its AI provider",
        });
    }
    if !a.org_baa {
        return Err(ClinicalError::Refused {
            code: "org_baa_missing",
            detail: "your organization has not declared a business associate agreement for AI",
        });
    }
    Ok(())
}

/// Replaces identifiers by placeholders before text leaves Carapace, and
/// puts them back in the answer: the patient in context's (names, birth
/// date, member id, phone, e-mail, in the notations people type them), and
/// every identifier a pattern finds in free text (another phone number, an
/// e-mail, a date, an SSN, an address …,
/// [`carapace_phi_crypto::identifiers`]), each as a numbered placeholder
/// (`[PHONE_1]`) that the same value keeps throughout a prompt.
#[derive(Clone, Default)]
pub struct Redactor {
    /// (value as it may appear, placeholder), longest value first.
    pairs: Vec<(String, &'static str)>,
    /// (placeholder, value to put back).
    back: Vec<(&'static str, String)>,
    /// Identifiers found in free text: (value, numbered placeholder).
    found: Vec<(String, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("identifiers", &self.pairs.len())
            .finish()
    }
}

/// Placeholders, one per kind of identifier.
pub const PLACEHOLDERS: [&str; 7] = [
    "[PATIENT_NAME]",
    "[PATIENT_GIVEN_NAME]",
    "[PATIENT_FAMILY_NAME]",
    "[PATIENT_BIRTH_DATE]",
    "[PATIENT_MEMBER_ID]",
    "[PATIENT_PHONE]",
    "[PATIENT_EMAIL]",
];

impl Redactor {
    /// No patient in context: nothing to replace.
    pub fn none() -> Self {
        Self::default()
    }

    /// For `d`: names (whole and each part), the birth date (ISO, US and
    /// European notation), member id, phone (as typed and as digits) and
    /// e-mail.
    pub fn for_patient(d: &Demographics) -> Self {
        let mut r = Self::default();
        let given = d.given_name.expose_phi().clone();
        let family = d.family_name.expose_phi().clone();
        r.add(format!("{given} {family}"), PLACEHOLDERS[0]);
        r.add(format!("{family}, {given}"), PLACEHOLDERS[0]);
        r.add(given, PLACEHOLDERS[1]);
        r.add(family, PLACEHOLDERS[2]);
        let b = *d.birth_date.expose_phi();
        let (y, m, day) = (b.year(), u8::from(b.month()), b.day());
        r.add(format!("{y:04}-{m:02}-{day:02}"), PLACEHOLDERS[3]);
        r.add(format!("{m:02}/{day:02}/{y:04}"), PLACEHOLDERS[3]);
        r.add(format!("{m}/{day}/{y:04}"), PLACEHOLDERS[3]);
        r.add(format!("{day:02}.{m:02}.{y:04}"), PLACEHOLDERS[3]);
        if let Some(v) = &d.member_id {
            r.add(v.expose_phi().clone(), PLACEHOLDERS[4]);
        }
        if let Some(v) = &d.phone {
            let typed = v.expose_phi().clone();
            let digits: String = typed.chars().filter(char::is_ascii_digit).collect();
            r.add(typed, PLACEHOLDERS[5]);
            r.add(digits, PLACEHOLDERS[5]);
        }
        if let Some(v) = &d.email {
            r.add(v.expose_phi().clone(), PLACEHOLDERS[6]);
        }
        r.pairs
            .sort_by_key(|(v, _)| std::cmp::Reverse(v.chars().count()));
        r
    }

    fn add(&mut self, value: String, placeholder: &'static str) {
        let value = value.trim().to_owned();
        if value.chars().count() < 2 {
            return;
        }
        if !self.back.iter().any(|(p, _)| *p == placeholder) {
            self.back.push((placeholder, value.clone()));
        }
        if !self
            .pairs
            .iter()
            .any(|(v, _)| v.eq_ignore_ascii_case(&value))
        {
            self.pairs.push((value, placeholder));
        }
    }

    /// `text` with every identifier replaced: the patient's (names and
    /// e-mail ignoring case), then whatever a pattern finds in the rest.
    pub fn redact(&mut self, text: &str) -> String {
        let mut out = text.to_owned();
        for (value, placeholder) in &self.pairs {
            out = replace_ignoring_case(&out, value, placeholder);
        }
        let found = carapace_phi_crypto::identifiers::find(&out);
        if found.is_empty() {
            return out;
        }
        let mut masked = String::with_capacity(out.len());
        let mut at = 0;
        for f in found {
            masked.push_str(&out[at..f.start]);
            masked.push_str(&self.numbered(&out[f.start..f.end], f.kind));
            at = f.end;
        }
        masked.push_str(&out[at..]);
        masked
    }

    /// The placeholder of a free-text identifier: the same value keeps its
    /// number.
    fn numbered(&mut self, value: &str, kind: carapace_phi_crypto::identifiers::Kind) -> String {
        if let Some((_, p)) = self.found.iter().find(|(v, _)| v == value) {
            return p.clone();
        }
        let label = kind.placeholder().trim_matches(['[', ']']);
        let n = self
            .found
            .iter()
            .filter(|(_, p)| p.starts_with(&format!("[{label}_")))
            .count()
            + 1;
        let placeholder = format!("[{label}_{n}]");
        self.found.push((value.to_owned(), placeholder.clone()));
        placeholder
    }

    /// `text` with the placeholders put back.
    pub fn restore(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (value, placeholder) in self.found.iter().rev() {
            out = out.replace(placeholder.as_str(), value);
        }
        for (placeholder, value) in &self.back {
            out = out.replace(placeholder, value);
        }
        out
    }
}

/// `haystack` with every occurrence of `needle` replaced by `with`,
/// comparing ASCII letters without case.
fn replace_ignoring_case(haystack: &str, needle: &str, with: &str) -> String {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let mut out = String::with_capacity(haystack.len());
    let mut i = 0;
    let mut start = 0;
    while i + n.len() <= h.len() {
        if h[i..i + n.len()].eq_ignore_ascii_case(n)
            && haystack.is_char_boundary(i)
            && haystack.is_char_boundary(i + n.len())
        {
            out.push_str(&haystack[start..i]);
            out.push_str(with);
            i += n.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&haystack[start..]);
    out
}

/// The instructions every conversation starts with.
pub const SYSTEM_PROMPT: &str = "You are a clinical documentation assistant. Bracketed placeholders such as [PATIENT_NAME] stand for patient details; use them as they are.";

/// What is sent to the provider: the instructions, then the earlier turns
/// of the same conversation and the new message, every text redacted. The
/// only text that leaves Carapace for a model is built here.
pub fn prompt(
    history: &[(Speaker, Phi<String>)],
    new: &Phi<String>,
    redactor: &mut Redactor,
) -> Prompt {
    let system = redactor.redact(SYSTEM_PROMPT);
    let mut turns: Vec<(Speaker, String)> = history
        .iter()
        .map(|(s, t)| (*s, redactor.redact(t.expose_phi())))
        .collect();
    turns.push((Speaker::User, redactor.redact(new.expose_phi())));
    Prompt { system, turns }
}

/// A redacted prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The instructions.
    pub system: String,
    /// The turns, oldest first, ending with the new message.
    pub turns: Vec<(Speaker, String)>,
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AiError {
    /// The provider could not be reached or answered an error.
    #[error("AI provider unavailable: {0}")]
    Unavailable(String),
}

/// A chat model.
pub trait AiProvider: Send + Sync {
    /// Who receives what is sent (named in each disclosure record), e.g.
    /// `openai:gpt-4o-mini`.
    fn name(&self) -> String;

    /// The next assistant message after `turns` (system prompt first).
    fn complete(
        &self,
        system: &str,
        turns: &[(Speaker, String)],
    ) -> impl Future<Output = Result<String, AiError>> + Send;
}

/// Each user's conversations, one per patient context (or none), sealed
/// per message.
pub trait AssistantRepository: Send + Sync {
    /// The caller's last `limit` turns of the conversation about `patient`
    /// (or about no patient), oldest first (`assistant.history`).
    fn history(
        &self,
        access: &Access,
        patient: Option<PatientId>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<(Speaker, Phi<String>)>, ClinicalError>> + Send;

    /// Appends turns to the caller's conversation about `patient` (or
    /// about no patient) (`assistant.message`).
    fn append(
        &self,
        access: &Access,
        patient: Option<PatientId>,
        turns: &[(Speaker, Phi<String>)],
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;
}

/// The record of a disclosure to the AI provider: an event on the patient
/// in context (so it is in the patient's access log), naming the provider.
/// Written before anything is sent; if it cannot be written, nothing is.
pub fn disclosure(
    access: &Access,
    patient: PatientId,
    provider: &str,
) -> carapace_audit::AuditEvent {
    access
        .event(
            "patient.disclosed",
            "patient",
            Some(patient.as_uuid().to_string()),
            carapace_audit::Outcome::Allowed,
        )
        .with_detail(format!(
            "to the AI provider {provider} (assistant, redacted)"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::PatientInput;

    fn jane() -> Demographics {
        PatientInput {
            given_name: "Jane".into(),
            family_name: "Roe".into(),
            birth_date: "1980-02-03".into(),
            member_id: Some("M-778".into()),
            phone: Some("+1 555 010 0100".into()),
            email: Some("jane.roe@example.org".into()),
            sex: None,
        }
        .parse(time::macros::date!(2026 - 01 - 01))
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn the_gate_names_the_missing_agreement() {
        let code = |a| ai_gate(a).err().map(|e| e.code());
        let all = Availability {
            deployment_enabled: true,
            deployment_baa: true,
            org_baa: true,
        };
        assert_eq!(code(all), None);
        assert_eq!(
            code(Availability {
                deployment_enabled: false,
                ..all
            }),
            Some("ai_disabled")
        );
        assert_eq!(
            code(Availability {
                deployment_baa: false,
                ..all
            }),
            Some("deployment_baa_missing")
        );
        assert_eq!(
            code(Availability {
                org_baa: false,
                ..all
            }),
            Some("org_baa_missing")
        );
    }

    #[test]
    fn identifiers_leave_as_placeholders_and_come_back() {
        let mut r = Redactor::for_patient(&jane());
        let text = "JANE ROE (born 02/03/1980, member M-778) called from 15550100100, \
                    mail Jane.Roe@example.org; Roe says Jane is better. Also 1980-02-03.";
        let out = r.redact(text);
        for secret in [
            "Jane",
            "JANE",
            "Roe",
            "1980",
            "M-778",
            "5550100",
            "example.org",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.starts_with(
                "[PATIENT_NAME] (born [PATIENT_BIRTH_DATE], member [PATIENT_MEMBER_ID])"
            ),
            "{out}"
        );
        assert_eq!(
            r.restore("Tell [PATIENT_GIVEN_NAME] [PATIENT_FAMILY_NAME] ([PATIENT_BIRTH_DATE])"),
            "Tell Jane Roe (1980-02-03)"
        );
        assert_eq!(Redactor::none().redact("Jane"), "Jane");
    }

    #[test]
    fn free_text_identifiers_are_numbered_and_restored() {
        let mut r = Redactor::for_patient(&jane());
        let out = r.redact(
            "Jane's sister (SSN 123-45-6789) calls from 555-010-0177 and 555-010-0188; \
             write to sis@example.net, born 04/05/1971. Call 555-010-0177 again.",
        );
        for secret in [
            "123-45-6789",
            "555-010-0177",
            "555-010-0188",
            "sis@example.net",
            "04/05/1971",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains("[PHONE_1] and [PHONE_2]") && out.ends_with("Call [PHONE_1] again."),
            "{out}"
        );
        assert_eq!(
            r.restore("Ring [PHONE_2], then mail [EMAIL_1] about [PATIENT_GIVEN_NAME]."),
            "Ring 555-010-0188, then mail sis@example.net about Jane."
        );
    }

    #[test]
    fn the_prompt_is_redacted_turn_by_turn() {
        let mut r = Redactor::for_patient(&jane());
        let history = vec![(Speaker::Assistant, Phi::new("Hello Jane".to_owned()))];
        let p = prompt(
            &history,
            &Phi::new("Summarise Roe's visit".to_owned()),
            &mut r,
        );
        assert_eq!(p.system, SYSTEM_PROMPT);
        assert_eq!(
            p.turns,
            vec![
                (Speaker::Assistant, "Hello [PATIENT_GIVEN_NAME]".to_owned()),
                (
                    Speaker::User,
                    "Summarise [PATIENT_FAMILY_NAME]'s visit".to_owned()
                ),
            ]
        );
        assert!(message("").is_err() && message(&"x".repeat(4001)).is_err());
    }
}
