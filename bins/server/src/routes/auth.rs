//! Local accounts: `/api/v1/auth/login`, `/auth/refresh`, `/auth/logout`,
//! and the public keys of Carapace's access tokens at
//! `/.well-known/jwks.json`.

use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use carapace_auth::AuthError;
use carapace_auth::local::{IssuedTokens, LoginOutcome};
use carapace_tenancy::{OrgId, OrgSlug, OrganizationRepository as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::http::ApiError;
use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{Reply, cookies, limits};
use crate::routes::problems;
use crate::state::{AppState, LocalAuthService, State};

/// Longest password looked at; longer ones cannot have been set.
const MAX_PASSWORD_CHARS: usize = 128;

/// Registers the auth routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The routes that guess or spend secrets without credentials are
    // charged per client address on the resource itself (after routing),
    // so every spelling of the path that reaches them is charged.
    let charged = || from_fn(limits::charge_client);
    cfg.service(
        web::resource("/auth/login")
            .wrap(charged())
            .route(web::post().to(login)),
    )
    .service(
        web::resource("/auth/refresh")
            .wrap(charged())
            .route(web::post().to(refresh)),
    )
    .service(web::resource("/auth/logout").route(web::post().to(logout)))
    .service(
        web::resource("/auth/mfa/verify")
            .wrap(charged())
            .route(web::post().to(mfa_verify)),
    )
    .service(web::resource("/auth/mfa/totp/enroll").route(web::post().to(totp_enroll)))
    .service(web::resource("/auth/mfa/totp/activate").route(web::post().to(totp_activate)))
    .service(
        web::resource("/auth/password-reset/request")
            .wrap(charged())
            .route(web::post().to(reset_request)),
    )
    .service(
        web::resource("/auth/password-reset/confirm")
            .wrap(charged())
            .route(web::post().to(reset_confirm)),
    );
}

/// Registers `/.well-known/jwks.json` (at the root).
pub fn configure_well_known(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/.well-known/jwks.json").route(web::get().to(jwks)));
}

/// Password login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Organization slug.
    #[schema(example = "demo", max_length = 63)]
    org: String,
    /// Login e-mail.
    #[schema(example = "jane@example.org", max_length = 254)]
    email: String,
    /// Password (12-128 characters).
    #[schema(max_length = 128)]
    password: String,
    /// `bearer` (default: tokens in the body) or `cookie` (browser session).
    #[serde(default)]
    mode: SessionMode,
}

/// How a client holds its session.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// Tokens in the response body; send `Authorization: Bearer`.
    #[default]
    Bearer,
    /// `__Host-` HttpOnly cookies plus a CSRF token for unsafe methods.
    Cookie,
}

/// The body of a cookie-mode sign-in.
#[derive(Serialize, ToSchema)]
pub struct CookieSession {
    /// Send this in `X-CSRF-Token` on every unsafe request.
    csrf_token: String,
    /// Access-token lifetime in seconds (refresh before then).
    expires_in: u64,
}

/// Answers a sign-in in the requested mode.
fn signed_in(tokens: IssuedTokens, mode: SessionMode) -> HttpResponse {
    match mode {
        SessionMode::Bearer => HttpResponse::Ok().json(TokenResponse::from(tokens)),
        SessionMode::Cookie => {
            let csrf = cookies::new_csrf_token();
            let mut res = HttpResponse::Ok();
            for c in cookies::session(&tokens, &csrf) {
                res.cookie(c);
            }
            res.json(CookieSession {
                csrf_token: csrf,
                expires_in: tokens.expires_in,
            })
        }
    }
}

/// A refresh token, for refresh and logout.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from login or the last refresh; omit it in cookie
    /// mode (the cookie is used, and `X-CSRF-Token` is required).
    #[serde(default)]
    #[schema(max_length = 128)]
    refresh_token: Option<String>,
}

/// The refresh token from the body (bearer mode) or the cookie (cookie
/// mode, CSRF-checked), and which mode it was.
fn presented_refresh(
    req: &HttpRequest,
    body: RefreshRequest,
) -> Result<(SecretString, SessionMode), ApiError> {
    match body.refresh_token {
        // Longer than any refresh token Carapace issues: not one (an access
        // token presented here, or garbage), refused like any wrong token.
        Some(token) if token.len() > 128 => {
            Err(ApiError::Unauthenticated(AuthError::InvalidCredentials))
        }
        Some(token) => Ok((SecretString::from(token), SessionMode::Bearer)),
        None => {
            cookies::check_csrf(req)?;
            let token = cookies::value(req, cookies::REFRESH)
                .ok_or(ApiError::Unauthenticated(AuthError::MissingCredentials))?;
            Ok((token, SessionMode::Cookie))
        }
    }
}

/// Tokens for a session.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Bearer access token (15 minutes).
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Access-token lifetime in seconds.
    expires_in: u64,
    /// Single-use refresh token; each refresh returns a new one.
    refresh_token: String,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh_token.expose_secret().to_owned(),
        }
    }
}

/// Login needs a second factor.
#[derive(Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always `true`.
    mfa_required: bool,
    /// Present with a code at `/auth/mfa/verify`.
    mfa_token: String,
    /// Seconds the challenge stays valid.
    expires_in: u64,
}

/// A second factor for a challenge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerify {
    /// The challenge from login.
    #[schema(max_length = 1024)]
    mfa_token: String,
    /// A 6-digit TOTP code, or a recovery code.
    #[schema(max_length = 32)]
    code: String,
    /// `bearer` (default) or `cookie`.
    #[serde(default)]
    mode: SessionMode,
}

/// A TOTP code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// 6 digits from the authenticator app.
    #[schema(max_length = 6)]
    code: String,
}

fn local(state: &AppState) -> Result<&LocalAuthService, ApiError> {
    state.local.as_ref().ok_or(ApiError::NotFound)
}

/// Logs in with a password. Unknown organization or user, wrong password,
/// and a throttled, locked or inactive account all answer the same 401; an
/// address with too many recent failures gets 429.
#[utoipa::path(post, operation_id = "auth_login", path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "invalid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts from this address", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(req: HttpRequest, state: State, body: JsonBody<LoginRequest>) -> Reply {
    let local = local(&state)?;
    let LoginRequest {
        org,
        email,
        password,
        mode,
    } = body.0;
    if matches!(mode, SessionMode::Cookie) {
        cookies::check_signin_origin(&req)?;
    }
    let password = SecretString::from(password);
    if password.expose_secret().chars().count() > MAX_PASSWORD_CHARS || email.len() > 254 {
        return Err(AuthError::InvalidCredentials.into());
    }
    let org = match OrgSlug::parse(&org) {
        Ok(slug) => state.orgs.find_by_slug(&slug).await?.map(|o| o.id),
        Err(_) => None,
    };
    // An unknown org runs the same flow against an org with no accounts,
    // so it costs the same and answers the same.
    let org = org.unwrap_or_else(|| OrgId::from_uuid(uuid::Uuid::nil()));
    let client = crate::http::limits::client_address(&req);
    let outcome = local
        .login(org, &email, &password, client, OffsetDateTime::now_utc())
        .await?;
    Ok(match outcome {
        LoginOutcome::Tokens(tokens) => signed_in(tokens, mode),
        LoginOutcome::MfaRequired {
            challenge,
            expires_in,
        } => HttpResponse::Ok().json(MfaChallenge {
            mfa_required: true,
            mfa_token: challenge.expose_secret().to_owned(),
            expires_in,
        }),
    })
}

/// Exchanges a refresh token for a new pair (the old one is spent).
/// Presenting a spent token ends the whole session.
#[utoipa::path(post, operation_id = "auth_refresh", path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
    ))]
pub async fn refresh(req: HttpRequest, state: State, body: JsonBody<RefreshRequest>) -> Reply {
    let (presented, mode) = presented_refresh(&req, body.0)?;
    let tokens = local(&state)?
        .refresh(&presented, OffsetDateTime::now_utc())
        .await?;
    Ok(signed_in(tokens, mode))
}

/// Ends the session of a refresh token (idempotent).
#[utoipa::path(post, operation_id = "auth_logout", path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "session ended")))]
pub async fn logout(req: HttpRequest, state: State, body: JsonBody<RefreshRequest>) -> Reply {
    let (presented, mode) = presented_refresh(&req, body.0)?;
    local(&state)?
        .logout(&presented, OffsetDateTime::now_utc())
        .await?;
    let mut res = HttpResponse::NoContent();
    if let SessionMode::Cookie = mode {
        for c in cookies::cleared() {
            res.cookie(c);
        }
    }
    Ok(res.finish())
}

/// Completes a login with a TOTP or recovery code; each code, and each
/// challenge, is accepted once.
#[utoipa::path(post, operation_id = "auth_mfa_verify", path = "/api/v1/auth/mfa/verify", tag = "auth", request_body = MfaVerify,
    responses(
        (status = 200, body = TokenResponse),
    ))]
pub async fn mfa_verify(req: HttpRequest, state: State, body: JsonBody<MfaVerify>) -> Reply {
    let MfaVerify {
        mfa_token,
        code,
        mode,
    } = body.0;
    if matches!(mode, SessionMode::Cookie) {
        cookies::check_signin_origin(&req)?;
    }
    if mfa_token.len() > 1024 || code.len() > 32 {
        return Err(AuthError::InvalidCredentials.into());
    }
    let tokens = local(&state)?
        .verify_mfa(
            &SecretString::from(mfa_token),
            &SecretString::from(code),
            crate::http::limits::client_address(&req),
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(signed_in(tokens, mode))
}

/// Starts TOTP enrolment for the caller's own local account (403 while
/// impersonating).
#[utoipa::path(post, operation_id = "auth_totp_enroll", path = "/api/v1/auth/mfa/totp/enroll", tag = "auth",
    responses(
        (status = 200, description = "{\"otpauth_uri\": …}"),
        problems::Impersonated,
        (status = 409, description = "already enabled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn totp_enroll(auth: Authorized, state: State) -> Reply {
    let enrolment = local(&state)?.enroll_totp(&auth.principal).await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "otpauth_uri": enrolment.otpauth_uri.expose_secret() })))
}

/// Activates TOTP with a current code; answers the recovery codes, once.
/// Every other session of the account ends (403 while impersonating).
#[utoipa::path(post, operation_id = "auth_totp_activate", path = "/api/v1/auth/mfa/totp/activate", tag = "auth", request_body = TotpCode,
    responses(
        (status = 200, description = "{\"recovery_codes\": [10 codes]}"),
        (status = 401, description = "wrong code", body = Problem, content_type = "application/problem+json"),
        problems::Impersonated,
    ))]
pub async fn totp_activate(auth: Authorized, state: State, body: JsonBody<TotpCode>) -> Reply {
    let code = SecretString::from(body.0.code);
    let codes = local(&state)?
        .activate_totp(&auth.principal, &code, OffsetDateTime::now_utc())
        .await?;
    let codes: Vec<&str> = codes.iter().map(|c| c.expose_secret()).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "recovery_codes": codes })))
}

/// Asks for a password-reset code by e-mail.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Organization slug.
    #[schema(max_length = 63)]
    org: String,
    /// The account's e-mail.
    #[schema(max_length = 254)]
    email: String,
}

/// Sets a new password with a reset code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The code from the e-mail.
    #[schema(max_length = 128)]
    token: String,
    /// The new password (12-128 characters, not a common password).
    #[schema(max_length = 128)]
    new_password: String,
}

/// Requests a reset code. Always 202 with the same body, whether or not
/// the account exists; the code goes only to the account's e-mail.
#[utoipa::path(post, operation_id = "auth_reset_request", path = "/api/v1/auth/password-reset/request", tag = "auth", request_body = ResetRequest,
    responses((status = 202, description = "accepted (always)")))]
pub async fn reset_request(state: State, body: JsonBody<ResetRequest>) -> Reply {
    if state.reset.is_none() {
        return Err(ApiError::NotFound);
    }
    let ResetRequest { org, email } = body.0;
    // Only the shape is checked here (the same for every account), so the
    // answer still says nothing about whether the account exists.
    let mut errors = Vec::new();
    if org.chars().count() > 63 {
        errors.push(carapace_clinical::FieldError::new(
            "org",
            "at most 63 characters",
        ));
    }
    if email.chars().count() > 254 {
        errors.push(carapace_clinical::FieldError::new(
            "email",
            "at most 254 characters",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // The work (lookup, token, mail) happens after the answer, so neither
    // the answer nor its timing says whether the account exists.
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let Some(reset) = state.reset.as_ref() else {
            return;
        };
        let org = match OrgSlug::parse(&org) {
            Ok(slug) => state
                .orgs
                .find_by_slug(&slug)
                .await
                .ok()
                .flatten()
                .map(|o| o.id),
            Err(_) => None,
        };
        if let Some(org) = org
            && let Err(e) = reset.request(org, &email, OffsetDateTime::now_utc()).await
        {
            tracing::error!(error = %e, "password reset request failed");
        }
    });
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "status": "accepted",
        "detail": "If the account exists, a reset code has been sent to its e-mail address."
    })))
}

/// Sets a new password; all of the account's sessions end.
#[utoipa::path(post, operation_id = "auth_reset_confirm", path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses(
        (status = 204, description = "password changed"),
        (status = 401, description = "unknown, used or expired code", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "password breaks the rules", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_confirm(state: State, body: JsonBody<ResetConfirm>) -> Reply {
    let reset = state.reset.as_ref().ok_or(ApiError::NotFound)?;
    let ResetConfirm {
        token,
        new_password,
    } = body.0;
    reset
        .confirm(
            &SecretString::from(token),
            &SecretString::from(new_password),
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Public keys that verify Carapace access tokens.
#[utoipa::path(get, operation_id = "auth_jwks_get", path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JWK set")))]
pub async fn jwks(state: State) -> HttpResponse {
    let keys = state
        .local
        .as_ref()
        .map(|l| l.tokens.jwks().clone())
        .unwrap_or_else(|| serde_json::json!({ "keys": [] }));
    HttpResponse::Ok().json(keys)
}
