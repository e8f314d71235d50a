//! Calendar feeds over SeaORM: token hashes per practitioner, and the
//! feed's read (booked appointments, minimized by
//! [`carapace_clinical::appointment::calendar::feed_event`]).

use carapace_audit::{Access, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::appointment::calendar::{
    CalendarFeedRepository, FeedEvent, FeedId, FeedInfo, feed_event,
};
use carapace_clinical::appointment::{AppointmentStatus, Slot};
use carapace_clinical::patient::PatientId;
use carapace_tenancy::{CalendarDetail, SubjectId, TenantContext};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};
use uuid::Uuid;

use crate::db::Database;
use crate::db::{Fetch as _, Run as _};
use crate::entity::calendar_feed as feed;
use crate::scope::{Live as _, Scoped as _};
use crate::{SeaAppointments, SeaPatients};

/// [`CalendarFeedRepository`] over `calendar_feeds` and `appointments`.
#[derive(Clone, Debug)]
pub struct SeaCalendarFeeds {
    db: Database,
    appointments: SeaAppointments,
    patients: SeaPatients,
}

impl SeaCalendarFeeds {
    /// Feeds in `db`.
    pub fn new(db: Database, appointments: SeaAppointments, patients: SeaPatients) -> Self {
        Self {
            db,
            appointments,
            patients,
        }
    }
}

fn info(r: feed::Model) -> Result<FeedInfo, ClinicalError> {
    Ok(FeedInfo {
        id: FeedId::from_uuid(r.id),
        practitioner: SubjectId::parse(&r.practitioner)
            .map_err(|_| ClinicalError::Storage(crate::fields::integrity()))?,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
    })
}

impl CalendarFeedRepository for SeaCalendarFeeds {
    async fn create(
        &self,
        access: &Access,
        practitioner: &SubjectId,
        token_hash: [u8; 32],
    ) -> Result<FeedInfo, ClinicalError> {
        let ctx = access.tenant();
        let row = feed::Model {
            org_id: ctx.org().as_uuid(),
            id: Uuid::now_v7(),
            practitioner: practitioner.as_str().to_owned(),
            token_hash: token_hash.to_vec(),
            created_at: carapace_audit::event::now_micros(),
            revoked_at: None,
        };
        let tx = self.db.begin_tenant(ctx).await?;
        feed::Entity::insert(feed::ActiveModel::from(row.clone()))
            .run(&tx)
            .await?;
        let made = access.event(
            "calendar_feed.create",
            "calendar_feed",
            Some(row.id.to_string()),
            Outcome::Allowed,
        );
        crate::audit::commit_with(tx, &[made]).await?;
        info(row)
    }

    async fn list(
        &self,
        access: &Access,
        practitioner: &SubjectId,
    ) -> Result<Vec<FeedInfo>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let rows = feed::Entity::find()
            .scoped(ctx)
            .filter(feed::Column::Practitioner.eq(practitioner.as_str()))
            .order_by_asc(feed::Column::Id)
            .all_in(&tx)
            .await?;
        let listed = access
            .event(
                "calendar_feed.list",
                "practitioner",
                Some(practitioner.as_str().to_owned()),
                Outcome::Allowed,
            )
            .with_detail(format!("{} feeds", rows.len()));
        crate::audit::commit_with(tx, &[listed]).await?;
        rows.into_iter().map(info).collect()
    }

    async fn revoke(
        &self,
        access: &Access,
        practitioner: &SubjectId,
        id: FeedId,
    ) -> Result<bool, ClinicalError> {
        let id = id.as_uuid();
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let done = feed::Entity::update_many()
            .col_expr(
                feed::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(Some(carapace_audit::event::now_micros())),
            )
            .scoped(ctx)
            .filter(feed::Column::Id.eq(id))
            .filter(feed::Column::Practitioner.eq(practitioner.as_str()))
            .filter(feed::Column::RevokedAt.is_null())
            .run(&tx)
            .await?;
        let outcome = Outcome::found(done.rows_affected == 1);
        let revoked = access.event(
            "calendar_feed.revoke",
            "calendar_feed",
            Some(id.to_string()),
            outcome,
        );
        crate::audit::commit_with(tx, &[revoked]).await?;
        Ok(done.rows_affected == 1)
    }

    async fn resolve(
        &self,
        ctx: &TenantContext,
        token_hash: [u8; 32],
    ) -> Result<Option<FeedInfo>, ClinicalError> {
        let select = feed::Entity::find()
            .live(ctx)
            .filter(feed::Column::TokenHash.eq(token_hash.to_vec()))
            .filter(feed::Column::RevokedAt.is_null());
        let row = crate::repo::read_one(&self.db, ctx, select).await?;
        row.map(info).transpose()
    }

    async fn events(
        &self,
        access: &Access,
        feed: &FeedInfo,
        window: Slot,
        detail: CalendarDetail,
    ) -> Result<Vec<FeedEvent>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let rows = self
            .appointments
            .starting_in(&tx, ctx, &feed.practitioner, window)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        let mut audit = Vec::with_capacity(rows.len() + 1);
        for a in rows
            .iter()
            .filter(|a| a.status == AppointmentStatus::Booked)
        {
            let initials = match detail {
                CalendarDetail::Initials => {
                    self.patients
                        .initials(&tx, ctx, PatientId::from_uuid(a.patient.as_uuid()))
                        .await?
                }
                CalendarDetail::Minimal => None,
            };
            events.push(feed_event(a, detail, initials.as_deref()));
            let fields: &[&str] = match detail {
                CalendarDetail::Initials => &["slot", "initials"],
                CalendarDetail::Minimal => &["slot"],
            };
            audit.push(
                access
                    .event(
                        "calendar_feed.read",
                        "appointment",
                        Some(a.id.to_string()),
                        Outcome::Allowed,
                    )
                    .with_phi_fields(fields)
                    .with_detail(format!("feed {}", feed.id)),
            );
        }
        if audit.is_empty() {
            audit.push(access.event(
                "calendar_feed.read",
                "calendar_feed",
                Some(feed.id.to_string()),
                Outcome::NotFound,
            ));
        }
        crate::audit::commit_with(tx, &audit).await?;
        Ok(events)
    }
}
