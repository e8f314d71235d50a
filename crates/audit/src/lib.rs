//! Audit trail of PHI access and security events.
//!
//! - [`event`]: the [`AuditEvent`] model and the [`Access`] (who, where)
//!   every PHI repository call takes, so nothing is read unattributed.
//! - [`chain`]: the per-organization hash chain, Ed25519-signed
//!   checkpoints and the verifier naming the first bad position.
//! - [`SecurityEvent`] and the [`SecurityEventSink`] port through which
//!   denials, cross-tenant attempts, impersonation and break-glass are
//!   recorded; the sink fails closed (a request whose event cannot be
//!   written fails).
//!
//! It never depends on a database driver, HTTP framework or logger sink,
//! and events never carry PHI.

pub mod alerts;
pub mod chain;
pub mod event;
pub mod export;
mod kind;
pub mod witness;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use carapace_tenancy::{OrgId, SubjectId};

pub use event::{Access, ActorKind, AuditEvent, Origin, Outcome};
pub use kind::ActionKind;

/// The audit trail could not be written (or read): the operation fails.
/// It keeps the store's error, so an outage of the trail's database stays
/// an outage (503) rather than becoming an internal error; its text is for
/// logs only.
#[derive(Debug, thiserror::Error)]
#[error("audit trail unavailable")]
pub struct AuditError(#[from] pub carapace_tenancy::StorageError);

impl AuditError {
    /// The store's error behind this one.
    pub fn into_storage(self) -> carapace_tenancy::StorageError {
        self.0
    }
}

/// What recording an event returns.
pub type AuditFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AuditError>> + Send + 'a>>;

/// Kinds of security events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityEventKind {
    /// A principal was refused a permission.
    AuthorizationDenied,
    /// The request's host named another organization than the token.
    HostOrgMismatch,
    /// An admin started impersonating a user.
    ImpersonationStarted,
    /// A clinician declared emergency access to a patient outside their care.
    BreakGlass,
    /// An admin changed the organization's access settings.
    OrgSettingsChanged,
    /// An admin relaxed MFA for PHI from every staff session to admins
    /// only (the detail holds the reason given).
    PhiMfaRelaxed,
    /// A request named another organization's resource (answered 404).
    CrossTenantAttempt,
    /// A password login succeeded (or reached its second factor).
    LoginSucceeded,
    /// A password login failed.
    LoginFailed,
    /// Too many failures: strangers' attempts on the account are delayed
    /// (throttled) or, after 100 in a row, only an administrator reopens it.
    AccountLocked,
    /// A second-factor code was wrong.
    MfaFailed,
    /// A second factor completed a login.
    MfaSucceeded,
    /// A spent refresh token was presented again: the session is revoked.
    RefreshTokenReused,
    /// A user started TOTP enrolment.
    MfaEnrollmentStarted,
    /// A user turned TOTP on.
    MfaEnabled,
    /// A password reset code was issued and mailed.
    PasswordResetRequested,
    /// A password was reset with an e-mailed code.
    PasswordReset,
    /// A reset code was refused (unknown, used or expired).
    PasswordResetFailed,
    /// An admin action on users, service keys or care relationships.
    AdminAction,
    /// An inbound webhook (a telephony callback) was unsigned, badly
    /// signed, for an organization without an account, or a replay.
    WebhookRejected,
}

impl SecurityEventKind {
    /// A stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationDenied => "authorization_denied",
            Self::HostOrgMismatch => "host_org_mismatch",
            Self::ImpersonationStarted => "impersonation_started",
            Self::BreakGlass => "break_glass",
            Self::OrgSettingsChanged => "org_settings_changed",
            Self::PhiMfaRelaxed => "phi_mfa_relaxed",
            Self::CrossTenantAttempt => "cross_tenant_attempt",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::AccountLocked => "account_locked",
            Self::MfaFailed => "mfa_failed",
            Self::MfaSucceeded => "mfa_succeeded",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::MfaEnrollmentStarted => "mfa_enrollment_started",
            Self::MfaEnabled => "mfa_enabled",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
            Self::PasswordResetFailed => "password_reset_failed",
            Self::AdminAction => "admin_action",
            Self::WebhookRejected => "webhook_rejected",
        }
    }

    /// The outcome recorded for this kind: refusals are `denied`.
    pub fn outcome(self) -> Outcome {
        match self {
            Self::AuthorizationDenied
            | Self::HostOrgMismatch
            | Self::CrossTenantAttempt
            | Self::LoginFailed
            | Self::AccountLocked
            | Self::MfaFailed
            | Self::RefreshTokenReused
            | Self::PasswordResetFailed
            | Self::WebhookRejected => Outcome::Denied,
            Self::ImpersonationStarted
            | Self::BreakGlass
            | Self::OrgSettingsChanged
            | Self::PhiMfaRelaxed
            | Self::LoginSucceeded
            | Self::MfaSucceeded
            | Self::MfaEnrollmentStarted
            | Self::MfaEnabled
            | Self::PasswordResetRequested
            | Self::PasswordReset
            | Self::AdminAction => Outcome::Allowed,
        }
    }
}

impl fmt::Display for SecurityEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something security-relevant that happened. `detail` must not hold PHI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityEvent {
    /// What happened.
    pub kind: SecurityEventKind,
    /// In which organization.
    pub org: OrgId,
    /// Who did it.
    pub subject: SubjectId,
    /// Identifiers and reasons only (a permission, a slug, a user id).
    pub detail: String,
    /// Where the request came from.
    pub origin: Origin,
    /// The account, user or key it is about, if any.
    pub resource_id: Option<String>,
    /// The administrator really acting, when `subject` is being
    /// impersonated: every event of an impersonated session names both.
    pub acting_for: Option<SubjectId>,
}

impl SecurityEvent {
    /// An event without origin or resource (set them with the fields).
    pub fn new(
        kind: SecurityEventKind,
        org: OrgId,
        subject: SubjectId,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            org,
            subject,
            detail: detail.into(),
            origin: Origin::default(),
            resource_id: None,
            acting_for: None,
        }
    }

    /// The same event, acted by `admin` impersonating the subject.
    pub fn acted_by(mut self, admin: Option<SubjectId>) -> Self {
        self.acting_for = admin;
        self
    }

    /// The same event about `resource_id`.
    pub fn about(mut self, resource_id: impl Into<String>) -> Self {
        self.resource_id = Some(resource_id.into());
        self
    }

    /// The audit event recording this security event.
    pub fn to_audit_event(&self) -> AuditEvent {
        let actor = carapace_tenancy::TenantContext::new(self.org, self.subject.clone());
        Access::new(
            actor,
            ActorKind::of_subject(&self.subject),
            self.origin.clone(),
        )
        .impersonated_by(self.acting_for.clone())
        .event(
            &format!("security.{}", self.kind.as_str()),
            "security",
            self.resource_id.clone(),
            self.kind.outcome(),
        )
        .with_detail(self.detail.clone())
    }
}

/// Where security events go. Recording fails closed: the caller fails the
/// request when the event cannot be written.
pub trait SecurityEventSink: Send + Sync {
    /// Records `event`.
    fn emit(&self, event: SecurityEvent) -> AuditFuture<'_>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_stable_names() {
        assert_eq!(
            SecurityEventKind::AuthorizationDenied.to_string(),
            "authorization_denied"
        );
        assert_eq!(
            SecurityEventKind::HostOrgMismatch.as_str(),
            "host_org_mismatch"
        );
        assert_eq!(
            SecurityEventKind::ImpersonationStarted.as_str(),
            "impersonation_started"
        );
    }
}
