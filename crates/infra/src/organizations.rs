//! The organization directory over SeaORM.

use carapace_tenancy::{
    CalendarDetail, ClinicianScope, NewOrganization, OrgId, OrgName, OrgSettings, OrgSlug,
    Organization, OrganizationRepository, PhiMfa, StorageError, TenancyError, TenantContext,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::organization as org;
use crate::scope::Scoped as _;

/// [`OrganizationRepository`] over the `organizations` table.
#[derive(Clone, Debug)]
pub struct SeaOrganizations {
    db: Database,
    recent: Option<Arc<Recent>>,
}

/// Organizations read by id in the last `ttl`: the request path reads its
/// organization's settings on every request, and they change rarely.
#[derive(Debug)]
struct Recent {
    ttl: Duration,
    by_id: Mutex<HashMap<OrgId, (Instant, Organization)>>,
}

/// Most organizations remembered at once (then the memory starts afresh).
const RECENT_MAX: usize = 10_000;

impl SeaOrganizations {
    /// The directory in `db`.
    pub fn new(db: Database) -> Self {
        Self { db, recent: None }
    }

    /// The directory in `db`, answering [`OrganizationRepository::find_by_id`]
    /// from memory for `ttl` after a read. A change made through this value
    /// is seen at once; one made elsewhere (another instance, the CLI)
    /// within `ttl`. Deleting an organization also ends its sessions and
    /// service keys at once, so `ttl` bounds only how long its bearer
    /// tokens from an outside issuer still pass.
    pub fn remembering(db: Database, ttl: Duration) -> Self {
        let recent = Recent {
            ttl,
            by_id: Mutex::new(HashMap::new()),
        };
        Self {
            db,
            recent: Some(Arc::new(recent)),
        }
    }

    fn remembered(&self, id: OrgId) -> Option<Organization> {
        let recent = self.recent.as_ref()?;
        let by_id = recent.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        by_id
            .get(&id)
            .filter(|(at, _)| at.elapsed() < recent.ttl)
            .map(|(_, o)| o.clone())
    }

    fn remember(&self, o: &Organization) {
        if let Some(recent) = &self.recent {
            let mut by_id = recent.by_id.lock().unwrap_or_else(PoisonError::into_inner);
            if by_id.len() >= RECENT_MAX {
                by_id.clear();
            }
            by_id.insert(o.id, (Instant::now(), o.clone()));
        }
    }

    fn forget(&self, id: OrgId) {
        if let Some(recent) = &self.recent {
            recent
                .by_id
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
    }
}

impl SeaOrganizations {
    /// Marks the organization deleted and, in the same transaction, ends
    /// every session and revokes every service key it has: the directory
    /// stops returning it, so no token, login or data key is accepted or
    /// issued for it again. The caller then destroys its data keys
    /// ([`crate::keys::KeyRing::shred`]). Returns false if there was no
    /// such live organization (and then changes nothing).
    pub async fn mark_deleted(&self, ctx: &TenantContext) -> Result<bool, StorageError> {
        use crate::entity::{service_key, session};
        use sea_orm::sea_query::Expr;
        self.forget(ctx.org());
        let now = OffsetDateTime::now_utc();
        let org = ctx.org().as_uuid();
        let tx = self.db.begin_tenant(ctx).await?;
        let done = org::Entity::update_many()
            .col_expr(org::Column::DeletedAt, Expr::value(now))
            .filter(org::Column::Id.eq(org))
            .filter(org::Column::DeletedAt.is_null())
            .run(&tx)
            .await?;
        if done.rows_affected != 1 {
            return Ok(false);
        }
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .in_org(org)
            .filter(session::Column::RevokedAt.is_null())
            .run(&tx)
            .await?;
        service_key::Entity::update_many()
            .col_expr(service_key::Column::RevokedAt, Expr::value(now))
            .in_org(org)
            .filter(service_key::Column::RevokedAt.is_null())
            .run(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)?;
        self.forget(ctx.org());
        Ok(true)
    }
}

/// Whether `id` names a live (not deleted) organization.
pub(crate) async fn is_live(
    conn: &impl sea_orm::ConnectionTrait,
    id: OrgId,
) -> Result<bool, StorageError> {
    let found = org::Entity::find_by_id(id.as_uuid())
        .filter(org::Column::DeletedAt.is_null())
        .one_in(conn)
        .await?;
    Ok(found.is_some())
}

impl OrganizationRepository for SeaOrganizations {
    async fn create(&self, new: NewOrganization) -> Result<Organization, TenancyError> {
        let id = OrgId::generate();
        let row = org::ActiveModel {
            id: Set(id.as_uuid()),
            slug: Set(new.slug.as_str().to_owned()),
            name: Set(new.name.as_str().to_owned()),
            created_at: Set(OffsetDateTime::now_utc()),
            clinician_scope: Set(ClinicianScope::default().as_str().to_owned()),
            phi_mfa: Set(PhiMfa::default().as_str().to_owned()),
            deleted_at: Set(None),
            calendar_detail: Set(CalendarDetail::default().as_str().to_owned()),
            external_referrals: Set(false),
            ai_baa: Set(false),
        };
        match crate::db::wait::bounded(
            org::Entity::insert(row).exec_without_returning(self.db.conn()),
        )
        .await
        {
            Ok(_) => Ok(Organization {
                id,
                slug: new.slug,
                name: new.name,
                settings: OrgSettings::default(),
            }),
            Err(e) => match e {
                StorageError::Constraint(_) => Err(TenancyError::SlugTaken),
                other => Err(other.into()),
            },
        }
    }

    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, TenancyError> {
        if let Some(o) = self.remembered(id) {
            return Ok(Some(o));
        }
        let row = org::Entity::find_by_id(id.as_uuid())
            .filter(org::Column::DeletedAt.is_null())
            .one(self.db.conn());
        let row = crate::db::wait::bounded(row).await?;
        let found = row.map(to_org).transpose()?;
        if let Some(o) = &found {
            self.remember(o);
        }
        Ok(found)
    }

    async fn update_settings(
        &self,
        id: OrgId,
        settings: OrgSettings,
    ) -> Result<bool, TenancyError> {
        use sea_orm::sea_query::Expr;
        self.forget(id);
        let done = org::Entity::update_many()
            .col_expr(
                org::Column::ClinicianScope,
                Expr::value(settings.clinician_scope.as_str()),
            )
            .col_expr(org::Column::PhiMfa, Expr::value(settings.phi_mfa.as_str()))
            .col_expr(
                org::Column::CalendarDetail,
                Expr::value(settings.calendar_detail.as_str()),
            )
            .col_expr(
                org::Column::ExternalReferrals,
                Expr::value(settings.external_referrals),
            )
            .col_expr(org::Column::AiBaa, Expr::value(settings.ai_baa))
            .filter(org::Column::Id.eq(id.as_uuid()))
            .filter(org::Column::DeletedAt.is_null())
            .exec(self.db.conn());
        let done = crate::db::wait::bounded(done).await?;
        // Again: a read between the first forget and the update may have
        // remembered the old settings.
        self.forget(id);
        Ok(done.rows_affected == 1)
    }

    async fn find_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organization>, TenancyError> {
        let row = org::Entity::find()
            .filter(org::Column::Slug.eq(slug.as_str()))
            .filter(org::Column::DeletedAt.is_null())
            .one(self.db.conn());
        let row = crate::db::wait::bounded(row).await?;
        row.map(to_org).transpose()
    }
}

fn to_org(r: org::Model) -> Result<Organization, TenancyError> {
    Ok(Organization {
        id: OrgId::from_uuid(r.id),
        slug: OrgSlug::parse(&r.slug)?,
        name: OrgName::parse(&r.name)?,
        settings: OrgSettings {
            clinician_scope: ClinicianScope::parse(&r.clinician_scope),
            phi_mfa: PhiMfa::parse(&r.phi_mfa),
            calendar_detail: CalendarDetail::parse(&r.calendar_detail),
            external_referrals: r.external_referrals,
            ai_baa: r.ai_baa,
        },
    })
}

/// The ids of every organization (for maintenance commands that walk all
/// tenants, each then in its own tenant transaction).
pub async fn all_org_ids(db: &Database) -> Result<Vec<OrgId>, StorageError> {
    use sea_orm::QuerySelect as _;
    let ids: Vec<uuid::Uuid> = org::Entity::find()
        .select_only()
        .column(org::Column::Id)
        .filter(org::Column::DeletedAt.is_null())
        .into_tuple()
        .all(db.conn())
        .await
        .map_err(storage_error)?;
    Ok(ids.into_iter().map(OrgId::from_uuid).collect())
}

/// Every organization, deleted ones included (their trail outlives them).
pub async fn every_org(db: &Database) -> Result<Vec<OrgId>, StorageError> {
    use sea_orm::QuerySelect as _;
    let ids: Vec<uuid::Uuid> = org::Entity::find()
        .select_only()
        .column(org::Column::Id)
        .into_tuple()
        .all(db.conn())
        .await
        .map_err(storage_error)?;
    Ok(ids.into_iter().map(OrgId::from_uuid).collect())
}
