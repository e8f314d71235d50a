//! The credentials extractor: a handler that takes [`Authorized`] runs
//! only for a verified principal (bearer token, or browser session cookie
//! with CSRF protection).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use carapace_audit::{Access as AuditAccess, ActorKind, Origin, SecurityEvent, SecurityEventKind};
use carapace_auth::policy::{
    Decision, DenyReason, authorize, authorize_interaction, require_phi_mfa,
};
use carapace_auth::rate_limit::{LimitKey, RateLimiter as _, Verdict};
use carapace_auth::{AuthError, Principal, Role, TokenVerifier as _};
use carapace_tenancy::{OrgSettings, OrgSlug, OrganizationRepository as _};
use secrecy::SecretString;

use super::access::{self, Access};
use super::{ApiError, cookies};
use crate::state::{AppState, State};

/// A request whose credentials verified and whose principal passes the
/// route's access rule in [`access::ROUTES`], with its organization's
/// access settings. A route without a rule, or a public route asking for
/// this, is refused: deny by default. An organization that no longer
/// resolves (unknown or deleted) opens nothing, and a PHI route also passes
/// the organization's PHI MFA rule.
#[derive(Debug)]
pub struct Authorized {
    /// Who is calling.
    pub principal: Principal,
    /// Their organization's access settings, as read for this request.
    pub settings: OrgSettings,
    /// Where the request came from (for audit events).
    pub origin: Origin,
}

impl Authorized {
    /// A security event of `kind` by this principal, from this request.
    pub fn security_event(
        &self,
        kind: SecurityEventKind,
        detail: impl Into<String>,
    ) -> SecurityEvent {
        self.principal.security_event(kind, detail, &self.origin)
    }

    /// The principal's access for PHI repositories and audit events.
    pub fn access(&self) -> AuditAccess {
        let kind = if self.principal.roles().contains(Role::Service) {
            ActorKind::Service
        } else {
            ActorKind::User
        };
        AuditAccess::new(self.principal.tenant(), kind, self.origin.clone())
            .impersonated_by(self.principal.actor().cloned())
    }
}

/// Where `req` came from, for audit events. The client address is the
/// peer's, or what a trusted proxy forwarded ([`super::limits::client_address`]).
pub fn origin(req: &HttpRequest) -> Origin {
    Origin {
        request_id: super::request_id::current(),
        client_ip: super::limits::client_address(req).map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        idempotency_key: super::idempotency::marker(req),
    }
}

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<State>().cloned();
        let pattern = req.match_pattern();
        let rule = pattern
            .as_deref()
            .and_then(|pattern| access::rule(req.method().as_str(), pattern));
        let interaction = pattern
            .as_deref()
            .and_then(|pattern| access::interaction(req.method().as_str(), pattern));
        let token = credentials(req);
        let origin = origin(req);
        let class = super::limits::principal_class(req);
        let host_slug = state
            .as_ref()
            .and_then(|s| s.base_domain.as_deref())
            .and_then(|base| org_slug_of_host(req.connection_info().host(), base));
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let needed = match rule {
                Some(Access::Needs(p)) => Some(p),
                Some(Access::SignedIn) => None,
                Some(Access::Public) | None => {
                    return Err(ApiError::Internal("route has no access rule".into()));
                }
            };
            let principal = state.authenticator.verify(&token?).await?;
            let charged = LimitKey::Principal {
                org: principal.org(),
                subject: principal.subject().clone(),
            };
            if let Verdict::Deny { retry_after } = state.limiter.check(class, &charged).await {
                tracing::warn!(class = class.as_str(), "rate limit exceeded");
                state.metrics.rate_limited(class.as_str());
                return Err(ApiError::RateLimited(retry_after));
            }
            if let Some(slug) = host_slug {
                check_host_org(&state, &principal, &slug, &origin).await?;
            }
            if let Some(permission) = needed {
                let decision = match (authorize(&principal, permission), interaction) {
                    (Decision::Allow, Some((resource, i))) => {
                        authorize_interaction(&principal, permission, resource, i)
                    }
                    (decision, _) => decision,
                };
                match decision {
                    Decision::Allow => {}
                    Decision::Deny(reason) => {
                        return Err(denied(
                            &state,
                            &principal,
                            &origin,
                            format!("{permission}"),
                            reason,
                        )
                        .await);
                    }
                }
            }
            let settings = state
                .orgs
                .find_by_id(principal.org())
                .await?
                .map(|o| o.settings)
                .ok_or(ApiError::Unauthenticated(AuthError::InvalidToken(
                    "organization unknown or deleted",
                )))?;
            if let Some(permission) = needed.filter(|p| p.is_phi())
                && let Decision::Deny(reason) = require_phi_mfa(&principal, settings.phi_mfa)
            {
                return Err(
                    denied(&state, &principal, &origin, format!("{permission}"), reason).await,
                );
            }
            if let Some(actor) = principal.actor() {
                // Every impersonated request is attributed to both.
                tracing::info!(subject = %principal.subject(), actor = %actor, org = %principal.org(), "impersonated request");
            }
            Ok(Self {
                principal,
                settings,
                origin,
            })
        })
    }
}

/// Records a security event; when it cannot be recorded the request fails
/// (fail closed).
pub(crate) async fn record(state: &AppState, event: SecurityEvent) -> Result<(), ApiError> {
    state.events.emit(event).await.map_err(ApiError::from)
}

/// Records an admin action (`what`, about `resource`) by `auth`'s principal.
pub(crate) async fn admin_action(
    state: &AppState,
    auth: &Authorized,
    what: &str,
    resource: String,
) -> Result<(), ApiError> {
    record(
        state,
        auth.security_event(SecurityEventKind::AdminAction, what)
            .about(resource),
    )
    .await
}

/// Records a denial as a security event and turns it into the answer (a
/// 500 instead when the event cannot be recorded).
pub(crate) async fn denied(
    state: &AppState,
    principal: &Principal,
    origin: &Origin,
    what: String,
    reason: DenyReason,
) -> ApiError {
    let recorded = record(
        state,
        SecurityEvent {
            kind: SecurityEventKind::AuthorizationDenied,
            org: principal.org(),
            subject: principal.subject().clone(),
            detail: format!("{what}: {reason:?}"),
            origin: origin.clone(),
            resource_id: None,
            acting_for: principal.actor().cloned(),
        },
    )
    .await;
    if let Err(e) = recorded {
        return e;
    }
    match reason {
        DenyReason::StepUpRequired(_) => ApiError::StepUpRequired,
        DenyReason::MissingPermission(_) => ApiError::Forbidden,
        DenyReason::NoRelationship(_) => ApiError::NoRelationship,
        DenyReason::OutOfScope(_) => ApiError::OutOfScope,
    }
}

/// The org slug of `host` (`<slug>.<base>`, port ignored), if it is one.
fn org_slug_of_host(host: &str, base: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.to_ascii_lowercase();
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then(|| label.to_owned())
}

/// The host's org must be the credential's org: else 403 and an event.
async fn check_host_org(
    state: &AppState,
    principal: &Principal,
    slug: &str,
    origin: &Origin,
) -> Result<(), ApiError> {
    let host_org = match OrgSlug::parse(slug) {
        Ok(slug) => state.orgs.find_by_slug(&slug).await?.map(|o| o.id),
        Err(_) => None,
    };
    if host_org == Some(principal.org()) {
        return Ok(());
    }
    record(
        state,
        SecurityEvent {
            kind: SecurityEventKind::HostOrgMismatch,
            org: principal.org(),
            subject: principal.subject().clone(),
            detail: format!("host org slug {slug:?}"),
            origin: origin.clone(),
            resource_id: None,
            acting_for: principal.actor().cloned(),
        },
    )
    .await?;
    Err(ApiError::Forbidden)
}

/// The bearer token, or, without an `Authorization` header, the browser
/// session cookie (then unsafe methods need the CSRF token).
pub(crate) fn credentials(req: &HttpRequest) -> Result<SecretString, ApiError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return bearer(req);
    }
    match cookies::value(req, cookies::SESSION) {
        Some(token) => {
            cookies::check_csrf(req)?;
            Ok(token)
        }
        None => Err(ApiError::Unauthenticated(AuthError::MissingCredentials)),
    }
}

fn bearer(req: &HttpRequest) -> Result<SecretString, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated(AuthError::MissingCredentials))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated(AuthError::InvalidToken("header is not text")))?;
    let (scheme, token) =
        value
            .split_once(' ')
            .ok_or(ApiError::Unauthenticated(AuthError::InvalidToken(
                "not a bearer token",
            )))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthenticated(AuthError::InvalidToken(
            "not a bearer token",
        )));
    }
    Ok(SecretString::from(token.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_slugs() {
        let base = "clinics.test";
        assert_eq!(
            org_slug_of_host("acme.clinics.test", base),
            Some("acme".into())
        );
        assert_eq!(
            org_slug_of_host("ACME.clinics.test:8443", base),
            Some("acme".into())
        );
        assert_eq!(
            org_slug_of_host("clinics.test", base),
            None,
            "the API host itself"
        );
        assert_eq!(org_slug_of_host("a.b.clinics.test", base), None);
        assert_eq!(org_slug_of_host("evilclinics.test", base), None);
        assert_eq!(org_slug_of_host("acme.other.test", base), None);
    }
}
