use std::fmt;
use std::str::FromStr;

use carapace_tenancy::{OrgId, SubjectId, TenantContext};

/// A role from the contract's fixed list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Organization administrator.
    Admin,
    /// Treating clinician.
    Clinician,
    /// Front-desk and operations staff.
    Staff,
    /// Read-only access.
    Viewer,
    /// A patient acting for themselves.
    Patient,
    /// Compliance officer (audit access).
    Compliance,
    /// Another service (machine identity).
    Service,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::Clinician,
        Role::Staff,
        Role::Viewer,
        Role::Patient,
        Role::Compliance,
        Role::Service,
    ];

    /// The role's name as it appears in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Staff => "staff",
            Role::Viewer => "viewer",
            Role::Patient => "patient",
            Role::Compliance => "compliance",
            Role::Service => "service",
        }
    }

    fn bit(self) -> u8 {
        1 << Role::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the contract's roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

/// A set of roles.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    /// Most role names read from one token; more is an invalid token.
    pub const MAX_CLAIMED: usize = 16;

    /// The set holding `roles`.
    pub fn of(roles: &[Role]) -> Self {
        Self(roles.iter().fold(0, |acc, r| acc | r.bit()))
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether any of `roles` is in the set.
    pub fn any(self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.contains(*r))
    }

    /// The roles in the set.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// An authenticated caller: subject, organization and roles, as proven by a
/// verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    subject: SubjectId,
    org: OrgId,
    roles: RoleSet,
    mfa: bool,
    actor: Option<SubjectId>,
    session: Option<crate::local::SessionId>,
    scopes: crate::smart::Scopes,
}

impl Principal {
    /// A security event of `kind` by this principal (naming the
    /// impersonating administrator too, if any), from `origin`.
    pub fn security_event(
        &self,
        kind: carapace_audit::SecurityEventKind,
        detail: impl Into<String>,
        origin: &carapace_audit::Origin,
    ) -> carapace_audit::SecurityEvent {
        let mut event =
            carapace_audit::SecurityEvent::new(kind, self.org, self.subject.clone(), detail)
                .acted_by(self.actor().cloned());
        event.origin = origin.clone();
        event
    }

    /// The principal limited to what `scopes` allow (SMART scopes only
    /// narrow the roles).
    pub fn with_scopes(mut self, scopes: crate::smart::Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// What the token's SMART scopes allow.
    pub fn scopes(&self) -> &crate::smart::Scopes {
        &self.scopes
    }

    /// A principal. Only token verifiers should build these.
    pub fn new(subject: SubjectId, org: OrgId, roles: RoleSet) -> Self {
        Self {
            subject,
            org,
            roles,
            mfa: false,
            actor: None,
            session: None,
            scopes: crate::smart::Scopes::unrestricted(),
        }
    }

    /// The same principal, signed in through the local session `session`
    /// (Carapace's own access tokens).
    pub fn with_session(mut self, session: crate::local::SessionId) -> Self {
        self.session = Some(session);
        self
    }

    /// The local session this principal's token belongs to, if any.
    pub fn session(&self) -> Option<crate::local::SessionId> {
        self.session
    }

    /// The same principal, acted for by `actor` (impersonation, RFC 8693 `act`).
    pub fn with_actor(mut self, actor: Option<SubjectId>) -> Self {
        self.actor = actor;
        self
    }

    /// Who is really acting, when this principal is being impersonated.
    pub fn actor(&self) -> Option<&SubjectId> {
        self.actor.as_ref()
    }

    /// The same principal, marked as having (or not) completed MFA.
    pub fn with_mfa(mut self, mfa: bool) -> Self {
        self.mfa = mfa;
        self
    }

    /// Whether the session completed multi-factor authentication.
    pub fn mfa(&self) -> bool {
        self.mfa
    }

    /// The token's subject.
    pub fn subject(&self) -> &SubjectId {
        &self.subject
    }

    /// The organization the token is bound to.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// The principal's roles.
    pub fn roles(&self) -> RoleSet {
        self.roles
    }

    /// The tenant context for data access on this principal's behalf.
    pub fn tenant(&self) -> TenantContext {
        TenantContext::new(self.org, self.subject.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("superuser".parse::<Role>(), Err(UnknownRole));
        assert_eq!("Admin".parse::<Role>(), Err(UnknownRole));
    }

    #[test]
    fn role_set_membership() {
        let set = RoleSet::of(&[Role::Viewer, Role::Service]);
        assert!(set.contains(Role::Viewer) && set.contains(Role::Service));
        assert!(!set.contains(Role::Admin));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Role::Viewer, Role::Service]
        );
        assert!(!RoleSet::default().any(&Role::ALL));
    }
}
