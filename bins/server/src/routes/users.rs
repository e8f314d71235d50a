//! `/api/v1/users`: user administration in the admin's own organization
//! (admin with MFA; see `docs/permissions.md`).

use actix_web::{HttpResponse, web};
use carapace_audit::SecurityEventKind;
use carapace_auth::local::admin::{AdminChange, UserRef};
use carapace_auth::local::{Account, MAX_FAILURES, Refusal};
use carapace_auth::{AuthError, Role, RoleSet};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::{Authorized, admin_action};
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::state::{AppState, State, UserAdminService};

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::idempotency::resource("/users")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(web::resource("/users/{id}").route(web::patch().to(change_roles)))
    .service(web::resource("/users/{id}/lock").route(web::post().to(lock)))
    .service(web::resource("/users/{id}/unlock").route(web::post().to(unlock)))
    .service(web::resource("/users/{id}/deactivate").route(web::post().to(deactivate)))
    .service(web::resource("/users/{id}/mfa/reset").route(web::post().to(reset_mfa)))
    .service(web::resource("/users/{id}/impersonate").route(web::post().to(impersonate)));
}

/// A user as administrators see it.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    /// Its id.
    id: Uuid,
    /// Login e-mail.
    email: String,
    /// Roles.
    roles: Vec<&'static str>,
    /// `false` once deactivated.
    active: bool,
    /// Whether only an administrator's unlock lets the user in again (an
    /// administrator's lock, or 100 failures in a row).
    locked: bool,
    /// Whether sign-ins from unknown addresses are delayed now after
    /// failed attempts (the owner's known addresses are not).
    throttled: bool,
    /// Whether TOTP is enabled.
    mfa_enabled: bool,
}

impl From<Account> for UserView {
    fn from(a: Account) -> Self {
        Self {
            id: a.id.as_uuid(),
            email: a.email.as_str().to_owned(),
            roles: a.roles.iter().map(Role::as_str).collect(),
            active: a.active,
            locked: a.login.admin_locked || a.login.failed >= MAX_FAILURES,
            throttled: a.login.refusal(OffsetDateTime::now_utc(), false)
                == Some(Refusal::Throttled),
            mfa_enabled: a.mfa_enabled,
        }
    }
}

/// A new user: an invitation to set a password is mailed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login e-mail.
    #[schema(max_length = 254)]
    email: String,
    /// Roles (1-7).
    roles: Vec<String>,
}

/// New roles for a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesChange {
    /// Roles (1-7); the user's sessions end.
    roles: Vec<String>,
}

fn admin(state: &AppState) -> Result<&UserAdminService, ApiError> {
    state.user_admin.as_ref().ok_or(ApiError::NotFound)
}

fn roles(names: &[String]) -> Result<RoleSet, ApiError> {
    if names.is_empty() || names.len() > Role::ALL.len() {
        return Err(AuthError::InvalidRequest("roles must hold 1 to 7 role names").into());
    }
    let parsed: Result<Vec<Role>, _> = names.iter().map(|r| r.parse::<Role>()).collect();
    parsed
        .map(|r| RoleSet::of(&r))
        .map_err(|_| AuthError::InvalidRequest("unknown role").into())
}

/// Lists the organization's users.
#[utoipa::path(get, operation_id = "users_list", path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [UserView])))]
pub async fn list(auth: Authorized, state: State) -> Reply {
    let users = admin(&state)?.list(&auth.principal).await?;
    Ok(HttpResponse::Ok().json(users.into_iter().map(UserView::from).collect::<Vec<_>>()))
}

/// Creates a user and mails an invitation code.
#[utoipa::path(post, operation_id = "users_create", path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView)))]
pub async fn create(auth: Authorized, state: State, body: JsonBody<NewUser>) -> Reply {
    let NewUser {
        email,
        roles: names,
    } = body.0;
    let account = admin(&state)?
        .invite(
            &auth.principal,
            &email,
            roles(&names)?,
            OffsetDateTime::now_utc(),
        )
        .await?;
    admin_action(&state, &auth, "user.create", account.id.to_string()).await?;
    Ok(HttpResponse::Created().json(UserView::from(account)))
}

/// The user a path names: a local account's id, or an identity-provider
/// subject `oidc:<sub>` (lock, unlock and deactivate only). Anything else
/// names nobody: 404.
fn user_ref(raw: &str) -> Result<UserRef, ApiError> {
    UserRef::parse(raw).ok_or(ApiError::NotFound)
}

async fn apply(auth: &Authorized, state: &AppState, id: String, change: AdminChange) -> Reply {
    let user = user_ref(&id)?;
    let what = match &change {
        AdminChange::Roles(_) => "user.roles_changed",
        AdminChange::Lock => "user.locked",
        AdminChange::Unlock => "user.unlocked",
        AdminChange::Deactivate => "user.deactivated",
        AdminChange::ResetMfa => "user.mfa_reset",
    };
    admin(state)?
        .change(&auth.principal, &user, change, OffsetDateTime::now_utc())
        .await?;
    admin_action(state, auth, what, user.subject()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Why an administrator removes a user's second factor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaReset {
    /// 10-500 characters, recorded in the audit trail before anything
    /// changes (e.g. the ticket of the user's identity check).
    #[schema(
        min_length = 10,
        max_length = 500,
        example = "lost phone; identity checked in person, ticket HD-1234"
    )]
    reason: String,
}

/// Removes a local user's second factor (TOTP) when they lost it: the
/// reason is recorded first (fail closed), then the factor is removed and
/// the user's sessions end; they sign in with their password and enrol a
/// new authenticator. Identity-provider users' factors are the provider's
/// and administrators cannot reset their own (422).
#[utoipa::path(post, operation_id = "users_reset_mfa", path = "/api/v1/users/{id}/mfa/reset", tag = "users", request_body = MfaReset,
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "reset"),
        (status = 422, description = "no reason, an identity-provider user, or oneself", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_mfa(
    auth: Authorized,
    state: State,
    id: web::Path<String>,
    body: JsonBody<MfaReset>,
) -> Reply {
    let reason = body.0.reason.trim();
    if !(10..=500).contains(&reason.chars().count()) {
        return Err(ApiError::Invalid(vec![carapace_clinical::FieldError::new(
            "reason",
            "must be 10-500 characters",
        )]));
    }
    let user = user_ref(&id)?;
    let admin = admin(&state)?;
    let asked = format!("user.mfa_reset requested: {reason}");
    admin_action(&state, &auth, &asked, user.subject()).await?;
    admin
        .change(
            &auth.principal,
            &user,
            AdminChange::ResetMfa,
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces a user's roles; the user's sessions end.
#[utoipa::path(patch, operation_id = "users_change_roles", path = "/api/v1/users/{id}", tag = "users", request_body = RolesChange,
    params(("id" = String, Path, description = "user id")), responses((status = 204, description = "changed")))]
pub async fn change_roles(
    auth: Authorized,
    state: State,
    id: web::Path<String>,
    body: JsonBody<RolesChange>,
) -> Reply {
    let change = AdminChange::Roles(roles(&body.0.roles)?);
    apply(&auth, &state, id.into_inner(), change).await
}

/// Locks a user out until an administrator unlocks them; the user's
/// sessions, reset codes and calendar feeds end. `id` may name an
/// identity-provider user (`oidc:<sub>`): their unexpired tokens are
/// refused at once.
#[utoipa::path(post, operation_id = "users_lock", path = "/api/v1/users/{id}/lock", tag = "users",
    params(("id" = String, Path, description = "user id, or `oidc:<sub>` for an identity-provider user")), responses((status = 204, description = "locked")))]
pub async fn lock(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    apply(&auth, &state, id.into_inner(), AdminChange::Lock).await
}

/// Clears a lock, throttling and the failure count. Issuer tokens issued
/// before the lock stay refused.
#[utoipa::path(post, operation_id = "users_unlock", path = "/api/v1/users/{id}/unlock", tag = "users",
    params(("id" = String, Path, description = "user id, or `oidc:<sub>` for an identity-provider user")), responses((status = 204, description = "unlocked")))]
pub async fn unlock(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    apply(&auth, &state, id.into_inner(), AdminChange::Unlock).await
}

/// Deactivates a user for good; the user's sessions, reset codes and
/// calendar feeds end (identity-provider users: every token is refused).
#[utoipa::path(post, operation_id = "users_deactivate", path = "/api/v1/users/{id}/deactivate", tag = "users",
    params(("id" = String, Path, description = "user id, or `oidc:<sub>` for an identity-provider user")), responses((status = 204, description = "deactivated")))]
pub async fn deactivate(auth: Authorized, state: State, id: web::Path<String>) -> Reply {
    apply(&auth, &state, id.into_inner(), AdminChange::Deactivate).await
}

/// An impersonation token.
#[derive(Serialize, ToSchema)]
pub struct ImpersonationToken {
    /// Bearer access token acting as the user; its `act` claim names you.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until it expires (no refresh).
    expires_in: u64,
}

/// Acts as a non-admin user of your organization for 15 minutes; every
/// request with the token is attributed to both of you.
#[utoipa::path(post, operation_id = "users_impersonate", path = "/api/v1/users/{id}/impersonate", tag = "users",
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = ImpersonationToken),
        (status = 422, description = "admins cannot be impersonated", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn impersonate(
    auth: Authorized,
    state: State,
    id: web::Path<carapace_auth::local::UserId>,
) -> Reply {
    let local = state.local.as_ref().ok_or(ApiError::NotFound)?;
    let target = id.into_inner();
    let (token, expires_in) = local
        .impersonate(&auth.principal, target, OffsetDateTime::now_utc())
        .await?;
    crate::http::auth::record(
        &state,
        auth.security_event(
            SecurityEventKind::ImpersonationStarted,
            format!("as user {target}"),
        ),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ImpersonationToken {
        access_token: token.expose_secret().to_owned(),
        token_type: "Bearer",
        expires_in,
    }))
}
