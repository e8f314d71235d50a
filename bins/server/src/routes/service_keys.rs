//! `/api/v1/service-keys`: administrators create (key shown once), list and
//! revoke their organization's service keys.

use actix_web::{HttpResponse, web};
use carapace_auth::Role;
use carapace_auth::RoleSet;
use carapace_auth::service_keys::{self, ServiceKeyId, ServiceKeyInfo, ServiceKeyStore as _};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::{Authorized, admin_action};
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::state::State;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/service-keys")
            .wrap(actix_web::middleware::from_fn(
                crate::http::idempotency::credential_middleware,
            ))
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/service-keys/{id}").route(web::delete().to(revoke)));
}

/// A new service key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceKey {
    /// A label, 1-100 characters.
    #[schema(example = "prior-auth voice bot", max_length = 100)]
    name: String,
    /// Some of `service`, `viewer`, `staff`, `clinician` (at most 4).
    #[schema(example = json!(["service", "viewer"]))]
    roles: Vec<String>,
    /// For a SMART backend client: its public keys (a JWKS of 1-8 RSA or
    /// EC keys, each with a `kid`). The key then also signs in with signed
    /// assertions at `/api/v1/auth/token` as `client_id`.
    #[schema(value_type = Option<Object>)]
    jwks: Option<serde_json::Value>,
}

/// A service key (never its secret, except once at creation).
#[derive(Serialize, ToSchema)]
pub struct ServiceKeyView {
    /// Its id.
    id: Uuid,
    /// Its label.
    name: String,
    /// Its roles.
    roles: Vec<&'static str>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339, when it last authenticated a request.
    last_used_at: Option<String>,
    /// RFC 3339, when it was revoked.
    revoked_at: Option<String>,
    /// The key itself: only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The SMART Backend Services `client_id`, for a key that holds a JWKS.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl ServiceKeyView {
    fn of(k: ServiceKeyInfo, org: carapace_tenancy::OrgId) -> Self {
        Self {
            client_id: k
                .jwks
                .is_some()
                .then(|| carapace_auth::backend::client_id(org, k.id)),
            id: k.id.as_uuid(),
            name: k.name,
            roles: k.roles.iter().map(Role::as_str).collect(),
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            key: None,
        }
    }
}

/// Creates a service key; the response carries it, once.
#[utoipa::path(post, operation_id = "service_keys_create", path = "/api/v1/service-keys", tag = "service keys", request_body = NewServiceKey,
    responses(
        (status = 201, body = ServiceKeyView),
    ))]
pub async fn create(auth: Authorized, state: State, body: JsonBody<NewServiceKey>) -> Reply {
    let NewServiceKey { name, roles, jwks } = body.0;
    let jwks = jwks
        .map(|j| {
            carapace_auth::backend::check_jwks(&j)
                .map(|()| j.to_string())
                .map_err(|why| {
                    ApiError::Invalid(vec![carapace_clinical::FieldError::new("jwks", why)])
                })
        })
        .transpose()?;
    if roles.len() > service_keys::ALLOWED_ROLES.len() {
        return Err(carapace_auth::AuthError::InvalidRequest("too many roles").into());
    }
    let roles: Vec<Role> = roles.iter().filter_map(|r| r.parse().ok()).collect();
    service_keys::check_new_key(&name, &roles)?;
    let ctx = auth.principal.tenant();
    let (key, hash) = service_keys::generate(ctx.org());
    let info = state
        .service_keys
        .create(&ctx, &name, RoleSet::of(&roles), hash, jwks.as_deref())
        .await?;
    let mut view = ServiceKeyView::of(info, ctx.org());
    admin_action(&state, &auth, "service_key.create", view.id.to_string()).await?;
    view.key = Some(key.expose_secret().to_owned());
    Ok(HttpResponse::Created().json(view))
}

/// Lists the organization's service keys.
#[utoipa::path(get, operation_id = "service_keys_list", path = "/api/v1/service-keys", tag = "service keys",
    responses((status = 200, body = [ServiceKeyView])))]
pub async fn list(auth: Authorized, state: State) -> Reply {
    let keys = state.service_keys.list(&auth.principal.tenant()).await?;
    Ok(HttpResponse::Ok().json(
        keys.into_iter()
            .map(|k| ServiceKeyView::of(k, auth.principal.org()))
            .collect::<Vec<_>>(),
    ))
}

/// Revokes a service key at once.
#[utoipa::path(delete, operation_id = "service_keys_revoke", path = "/api/v1/service-keys/{id}", tag = "service keys",
    params(("id" = Uuid, Path, description = "key id")),
    responses((status = 204, description = "revoked")))]
pub async fn revoke(auth: Authorized, state: State, id: web::Path<Uuid>) -> Reply {
    let id = id.into_inner();
    if state
        .service_keys
        .revoke(
            &auth.principal.tenant(),
            ServiceKeyId::from_uuid(id),
            OffsetDateTime::now_utc(),
        )
        .await?
    {
        admin_action(&state, &auth, "service_key.revoke", id.to_string()).await?;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}
