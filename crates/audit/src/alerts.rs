//! Alert rules over security events, and the signature of the webhook
//! that delivers them. Rules are pure: storage supplies the count of
//! recent failures, this module decides.

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::Serialize;
use sha2::Sha256;

use crate::event::AuditEvent;

/// Failed logins of one account within [`FAILED_LOGIN_WINDOW_SECS`] above
/// which an alert is raised.
pub const FAILED_LOGIN_THRESHOLD: u64 = 3;
/// The window of [`FAILED_LOGIN_THRESHOLD`], in seconds (10 minutes).
pub const FAILED_LOGIN_WINDOW_SECS: i64 = 600;

/// Why an alert was raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertRule {
    /// More than three failed logins for one account in ten minutes.
    FailedLoginBurst,
    /// Any request for another organization's data.
    CrossTenantAttempt,
    /// Any break-glass declaration.
    BreakGlass,
    /// A spent refresh token presented again (likely theft).
    RefreshTokenReuse,
}

impl AlertRule {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailedLoginBurst => "failed_login_burst",
            Self::CrossTenantAttempt => "cross_tenant_attempt",
            Self::BreakGlass => "break_glass",
            Self::RefreshTokenReuse => "refresh_token_reuse",
        }
    }
}

/// The rule `event` triggers, if any. `failures_in_window` counts the
/// failed logins of the event's account in the window, this one included;
/// the burst alert fires once, when the count first passes the threshold.
pub fn rule_for(event: &AuditEvent, failures_in_window: u64) -> Option<AlertRule> {
    match event.action.as_str() {
        "security.cross_tenant_attempt" => Some(AlertRule::CrossTenantAttempt),
        "security.break_glass" => Some(AlertRule::BreakGlass),
        "security.refresh_token_reused" => Some(AlertRule::RefreshTokenReuse),
        "security.login_failed"
            if event.resource_id.is_some() && failures_in_window == FAILED_LOGIN_THRESHOLD + 1 =>
        {
            Some(AlertRule::FailedLoginBurst)
        }
        _ => None,
    }
}

/// The webhook body: identifiers only, never PHI.
#[derive(Clone, Debug, Serialize)]
pub struct AlertPayload<'a> {
    /// The rule.
    pub alert: AlertRule,
    /// The event that raised it.
    pub event: &'a AuditEvent,
}

/// The `X-Carapace-Signature` value for `body` sent at `timestamp` (Unix
/// seconds): `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"`
/// under the shared secret. Receivers recompute it and reject stale
/// timestamps.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Access, Outcome};
    use carapace_tenancy::{OrgId, SubjectId, TenantContext};

    fn event(action: &str, resource: Option<&str>) -> AuditEvent {
        Access::system(TenantContext::new(
            OrgId::generate(),
            SubjectId::parse("someone").unwrap_or_else(|e| panic!("{e}")),
        ))
        .event(
            action,
            "security",
            resource.map(str::to_owned),
            Outcome::Denied,
        )
    }

    #[test]
    fn rules_fire_on_their_events_and_the_burst_once() {
        assert_eq!(
            rule_for(&event("security.cross_tenant_attempt", None), 0),
            Some(AlertRule::CrossTenantAttempt)
        );
        assert_eq!(
            rule_for(&event("security.break_glass", None), 0),
            Some(AlertRule::BreakGlass)
        );
        assert_eq!(
            rule_for(&event("security.refresh_token_reused", None), 0),
            Some(AlertRule::RefreshTokenReuse)
        );
        let failed = event("security.login_failed", Some("user-1"));
        let fired: Vec<u64> = (1..=8)
            .filter(|n| rule_for(&failed, *n).is_some())
            .collect();
        assert_eq!(fired, vec![4], "more than three, alerted once per burst");
        assert_eq!(rule_for(&event("security.login_failed", None), 4), None);
        assert_eq!(rule_for(&event("patient.read", Some("p")), 9), None);
    }

    #[test]
    fn the_signature_is_an_hmac_of_timestamp_and_body() {
        let a = webhook_signature(b"secret-one", 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_eq!(a, webhook_signature(b"secret-one", 1_700_000_000, b"{}"));
        assert_ne!(a, webhook_signature(b"secret-two", 1_700_000_000, b"{}"));
        assert_ne!(a, webhook_signature(b"secret-one", 1_700_000_001, b"{}"));
        assert_ne!(a, webhook_signature(b"secret-one", 1_700_000_000, b"{ }"));
    }
}
