use carapace_audit::AuditError;
use carapace_auth::policy::DenyReason;
use carapace_tenancy::{StorageError, TenancyError};

/// One problem with one input field. Messages describe the rule, never echo
/// the (possibly PHI) value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the client sent it.
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Errors of the clinical domain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClinicalError {
    /// The input broke one or more rules; every problem is listed.
    #[error("invalid input ({} problems)", .0.len())]
    Invalid(Vec<FieldError>),
    /// No such record in the caller's organization.
    #[error("not found")]
    NotFound,
    /// The request clashes with the record's state or another record
    /// (`code` names the rule, `detail` says it in words).
    #[error("conflict: {code}")]
    Conflict {
        /// Stable code, e.g. `slot_taken`.
        code: &'static str,
        /// What clashed, never a value.
        detail: &'static str,
    },
    /// The rules refuse the request whatever the input (`code` names the
    /// rule).
    #[error("refused: {code}")]
    Refused {
        /// Stable code, e.g. `external_referrals_off`.
        code: &'static str,
        /// Why, in words.
        detail: &'static str,
    },
    /// The feature is not available here (503), `code` says why.
    #[error("unavailable: {code}")]
    Unavailable {
        /// Stable code, e.g. `ai_disabled`.
        code: &'static str,
        /// Why, in words.
        detail: &'static str,
    },
    /// The access policy refused the caller (the refusal is already
    /// recorded as a security event).
    #[error("denied: {0:?}")]
    Denied(DenyReason),
    /// The record changed since the version the caller based its change
    /// on (a stale `If-Match`): nothing was written.
    #[error("version conflict")]
    VersionConflict,
    /// The caller already has as much of this work under way as allowed;
    /// try again after the duration (429).
    #[error("too much under way")]
    Busy(std::time::Duration),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A security event could not be recorded: the request fails (fail
    /// closed).
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// An organization lookup's failure as a clinical one: the directory
/// fails in its storage only; anything else it says is a storage fault too.
impl From<TenancyError> for ClinicalError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::Storage(s) => Self::Storage(s),
            other => Self::Storage(StorageError::Internal(Box::new(other))),
        }
    }
}

impl ClinicalError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation_failed",
            Self::NotFound => "not_found",
            Self::Conflict { code, .. }
            | Self::Refused { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::Denied(DenyReason::MissingPermission(_)) => "forbidden",
            Self::Denied(DenyReason::StepUpRequired(_)) => "mfa_required",
            Self::Denied(DenyReason::NoRelationship(_)) => "no_relationship",
            Self::Denied(DenyReason::OutOfScope(_)) => "insufficient_scope",
            Self::VersionConflict => "version_conflict",
            Self::Busy(_) => "rate_limited",
            Self::Storage(e) => e.code(),
            Self::Audit(e) => e.0.code(),
        }
    }
}
