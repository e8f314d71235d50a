//! The audit event: who did what to which resource, when, from where, and
//! with what outcome. Never a PHI value: resources are named by id, PHI by
//! field name.

use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest free-text value kept in an event (user agent, detail).
pub const MAX_TEXT: usize = 256;

/// What kind of caller acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person with an account or an identity-provider login.
    User,
    /// A service account (service key or client credentials).
    Service,
    /// Carapace itself (CLI, background jobs).
    System,
}

impl ActorKind {
    /// The kind a subject names: `service:<key id>` is a service account,
    /// `system:<job>` Carapace itself, anything else a person.
    pub fn of_subject(subject: &SubjectId) -> Self {
        let s = subject.as_str();
        if s.starts_with("service:") {
            Self::Service
        } else if s.starts_with("system:") {
            Self::System
        } else {
            Self::User
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Allowed,
    /// Refused by policy.
    Denied,
    /// Nothing there (in the caller's organization).
    NotFound,
    /// Failed.
    Error,
}

impl Outcome {
    /// An action on one record: [`Outcome::Allowed`] when the record was
    /// there (and acted on), [`Outcome::NotFound`] when it was not.
    pub fn found(there: bool) -> Self {
        if there { Self::Allowed } else { Self::NotFound }
    }

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Error => "error",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Allowed, Self::Denied, Self::NotFound, Self::Error]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// Where a request came from. Values are truncated to [`MAX_TEXT`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The request id (`X-Request-Id`).
    pub request_id: Option<String>,
    /// The client address as the server saw it.
    pub client_ip: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The hashed `Idempotency-Key` record of the request, when it sent
    /// one: the write that this event records marks that record committed
    /// in its own transaction. Never part of the event itself (not
    /// serialized, not chained).
    #[serde(skip)]
    pub idempotency_key: Option<[u8; 32]>,
}

/// Who is acting, in which organization, from where: everything an audit
/// event needs besides what happened. PHI repositories take one of these,
/// so no PHI can be read without someone to attribute it to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    tenant: TenantContext,
    kind: ActorKind,
    acting_for: Option<SubjectId>,
    origin: Origin,
}

impl Access {
    /// `tenant`'s actor, of `kind`, from `origin`.
    pub fn new(tenant: TenantContext, kind: ActorKind, origin: Origin) -> Self {
        Self {
            tenant,
            kind,
            acting_for: None,
            origin: Origin {
                request_id: origin.request_id.map(clip),
                client_ip: origin.client_ip.map(clip),
                user_agent: origin.user_agent.map(clip),
                idempotency_key: origin.idempotency_key,
            },
        }
    }

    /// Carapace itself acting in `tenant` (CLI, jobs, tests).
    pub fn system(tenant: TenantContext) -> Self {
        Self::new(tenant, ActorKind::System, Origin::default())
    }

    /// The same access performed by `admin` impersonating the actor.
    pub fn impersonated_by(mut self, admin: Option<SubjectId>) -> Self {
        self.acting_for = admin;
        self
    }

    /// The same actor, kind and origin acting in `org` (record sharing
    /// across organizations: each side's events carry the real actor).
    pub fn in_org(&self, org: OrgId) -> Self {
        Self {
            tenant: TenantContext::new(org, self.tenant.actor().clone()),
            kind: self.kind,
            acting_for: self.acting_for.clone(),
            origin: self.origin.clone(),
        }
    }

    /// The tenant context data access is confined to.
    pub fn tenant(&self) -> &TenantContext {
        &self.tenant
    }

    /// The organization.
    pub fn org(&self) -> OrgId {
        self.tenant.org()
    }

    /// Where the request came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// An event of this access: `action` on `resource_type`/`resource_id`.
    pub fn event(
        &self,
        action: &str,
        resource_type: &str,
        resource_id: Option<String>,
        outcome: Outcome,
    ) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            org: self.org(),
            at: now_micros(),
            actor: self.tenant.actor().clone(),
            actor_kind: self.kind,
            acting_for: self.acting_for.clone(),
            action: clip(action.to_owned()),
            resource_type: clip(resource_type.to_owned()),
            resource_id: resource_id.map(clip),
            phi_fields: Vec::new(),
            outcome,
            origin: self.origin.clone(),
            detail: None,
        }
    }
}

/// The current time at microsecond precision (what every database keeps).
pub fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// One audit record. Its canonical form ([`Self::canonical`]) is what the
/// hash chain covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique, time-ordered id.
    pub id: Uuid,
    /// The organization.
    pub org: OrgId,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who (the token's subject).
    pub actor: SubjectId,
    /// What kind of actor.
    pub actor_kind: ActorKind,
    /// The admin really acting, when `actor` is being impersonated.
    pub acting_for: Option<SubjectId>,
    /// What was done, `resource.verb` (`patient.read`, `auth.login`).
    pub action: String,
    /// The kind of resource (`patient`, `user`, `audit_log`).
    pub resource_type: String,
    /// Its id, when there is one.
    pub resource_id: Option<String>,
    /// Names of the PHI fields read or written (never their values).
    pub phi_fields: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Where the request came from.
    pub origin: Origin,
    /// Identifiers or a reason code; never PHI.
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The same event naming the PHI `fields` it touched.
    pub fn with_phi_fields(mut self, fields: &[&str]) -> Self {
        self.phi_fields = fields.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    /// The same event with a non-PHI `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(clip(detail.into()));
        self
    }

    /// The canonical bytes: JSON with the fields in declaration order, no
    /// whitespace. Stored as is, so verification never depends on how a
    /// database round-trips timestamps or text.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses canonical bytes.
    pub fn from_canonical(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_on_a_missing_record_is_recorded_as_not_found() {
        assert_eq!(Outcome::found(true), Outcome::Allowed);
        assert_eq!(Outcome::found(false), Outcome::NotFound);
    }

    fn access() -> Access {
        let actor = SubjectId::parse("user-1").unwrap_or_else(|e| panic!("{e}"));
        Access::new(
            TenantContext::new(OrgId::generate(), actor),
            ActorKind::User,
            Origin {
                request_id: Some("req-1".into()),
                client_ip: Some("192.0.2.1".into()),
                user_agent: Some("x".repeat(1000)),
                idempotency_key: None,
            },
        )
    }

    #[test]
    fn subjects_name_their_kind() {
        let kind =
            |s: &str| ActorKind::of_subject(&SubjectId::parse(s).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(kind("service:0191"), ActorKind::Service);
        assert_eq!(kind("system:reminders"), ActorKind::System);
        assert_eq!(kind("oidc:abc"), ActorKind::User);
    }

    #[test]
    fn events_round_trip_through_their_canonical_form() {
        let e = access()
            .event(
                "patient.read",
                "patient",
                Some("p-1".into()),
                Outcome::Allowed,
            )
            .with_phi_fields(&["given_name", "birth_date"]);
        assert_eq!(
            e.origin.user_agent.as_ref().map(String::len),
            Some(MAX_TEXT)
        );
        assert_eq!(e.at.nanosecond() % 1000, 0);
        let bytes = e.canonical();
        assert_eq!(AuditEvent::from_canonical(&bytes), Some(e.clone()));
        assert_eq!(bytes, e.canonical(), "deterministic");
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in [
            Outcome::Allowed,
            Outcome::Denied,
            Outcome::NotFound,
            Outcome::Error,
        ] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("maybe"), None);
    }
}
