//! The credentials extractor: a handler that takes [`Authenticated`] runs
//! only for a verified principal (bearer token, or browser session cookie
//! with CSRF protection).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use carapace_audit::{SecurityEvent, SecurityEventKind};
use carapace_auth::policy::{Decision, DenyReason, authorize, require_phi_mfa};
use carapace_auth::{AuthError, Principal, TokenVerifier as _};
use carapace_tenancy::{OrgSettings, OrgSlug, OrganizationRepository as _};
use secrecy::SecretString;

use super::access::{self, Access};
use super::{ApiError, cookies};
use crate::state::AppState;

/// A request whose credentials verified and whose principal passes the
/// route's access rule in [`access::ROUTES`], with its organization's
/// access settings. A route without a rule, or a public route asking for
/// this, is refused: deny by default. An organization that no longer
/// resolves (unknown or deleted) opens nothing, and a PHI route also passes
/// the organization's PHI MFA rule.
#[derive(Debug)]
pub struct Authorized(pub Principal, pub OrgSettings);

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let rule = req
            .match_pattern()
            .and_then(|pattern| access::rule(req.method().as_str(), &pattern));
        let token = credentials(req);
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
            if let Some(slug) = host_slug {
                check_host_org(&state, &principal, &slug).await?;
            }
            if let Some(permission) = needed {
                match authorize(&principal, permission) {
                    Decision::Allow => {}
                    Decision::Deny(reason) => {
                        return Err(denied(&state, &principal, format!("{permission}"), reason));
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
                return Err(denied(&state, &principal, format!("{permission}"), reason));
            }
            if let Some(actor) = principal.actor() {
                // Every impersonated request is attributed to both.
                tracing::info!(subject = %principal.subject(), actor = %actor, org = %principal.org(), "impersonated request");
            }
            Ok(Self(principal, settings))
        })
    }
}

/// Records a denial as a security event and turns it into the answer.
pub(crate) fn denied(
    state: &AppState,
    principal: &Principal,
    what: String,
    reason: DenyReason,
) -> ApiError {
    state.events.emit(SecurityEvent {
        kind: SecurityEventKind::AuthorizationDenied,
        org: principal.org(),
        subject: principal.subject().clone(),
        detail: format!("{what}: {reason:?}"),
    });
    match reason {
        DenyReason::StepUpRequired(_) => ApiError::StepUpRequired,
        DenyReason::MissingPermission(_) => ApiError::Forbidden,
        DenyReason::NoRelationship(_) => ApiError::NoRelationship,
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
) -> Result<(), ApiError> {
    let host_org = match OrgSlug::parse(slug) {
        Ok(slug) => state.orgs.find_by_slug(&slug).await?.map(|o| o.id),
        Err(_) => None,
    };
    if host_org == Some(principal.org()) {
        return Ok(());
    }
    state.events.emit(SecurityEvent {
        kind: SecurityEventKind::HostOrgMismatch,
        org: principal.org(),
        subject: principal.subject().clone(),
        detail: format!("host org slug {slug:?}"),
    });
    Err(ApiError::Forbidden)
}

/// The bearer token, or, without an `Authorization` header, the browser
/// session cookie (then unsafe methods need the CSRF token).
fn credentials(req: &HttpRequest) -> Result<SecretString, ApiError> {
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
