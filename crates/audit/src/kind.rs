//! What kind of access an action is, as FHIR's `AuditEvent.action` codes
//! it: create, read, update, delete, or execute (everything else). The
//! kind follows an action's verb, its last dot-separated part
//! (`patient.read` reads).

/// The kind of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// `C`: something was made.
    Create,
    /// `R`: something was read, listed or disclosed.
    Read,
    /// `U`: something was changed.
    Update,
    /// `D`: something was removed.
    Delete,
    /// `E`: anything else (sign-ins, refusals, administration…).
    Execute,
}

impl ActionKind {
    /// Every kind.
    pub const ALL: [ActionKind; 5] = [
        Self::Create,
        Self::Read,
        Self::Update,
        Self::Delete,
        Self::Execute,
    ];

    /// The verbs of this kind; none for [`ActionKind::Execute`], which is
    /// every verb of no other kind.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Self::Create => &["create", "book", "add"],
            Self::Read => &["read", "list", "access_log", "play", "view", "export"],
            Self::Update => &["update", "write", "reschedule", "cancel", "complete"],
            Self::Delete => &["delete", "purge"],
            Self::Execute => &[],
        }
    }

    /// The kind of `action`.
    pub fn of(action: &str) -> Self {
        let verb = action.rsplit('.').next().unwrap_or(action);
        Self::ALL
            .into_iter()
            .find(|k| k.verbs().contains(&verb))
            .unwrap_or(Self::Execute)
    }

    /// FHIR's code: `C`, `R`, `U`, `D` or `E`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Create => "C",
            Self::Read => "R",
            Self::Update => "U",
            Self::Delete => "D",
            Self::Execute => "E",
        }
    }

    /// The kind FHIR's `code` names.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_of_their_verbs_kind() {
        assert_eq!(ActionKind::of("patient.read"), ActionKind::Read);
        assert_eq!(ActionKind::of("patient.export"), ActionKind::Read);
        assert_eq!(ActionKind::of("appointment.book"), ActionKind::Create);
        assert_eq!(ActionKind::of("appointment.cancel"), ActionKind::Update);
        assert_eq!(ActionKind::of("patient.delete"), ActionKind::Delete);
        assert_eq!(ActionKind::of("login.succeeded"), ActionKind::Execute);
        assert_eq!(ActionKind::of("read"), ActionKind::Read);
        // A verb inside the name is not the verb.
        assert_eq!(ActionKind::of("read.denied"), ActionKind::Execute);
        for k in ActionKind::ALL {
            assert_eq!(ActionKind::parse(k.code()), Some(k));
        }
        assert_eq!(ActionKind::parse("r"), None);
    }
}
