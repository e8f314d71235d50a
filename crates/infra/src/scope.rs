//! The organization filter, written once.
//!
//! On SQLite there is no row-level security: the `org_id = …` filter on
//! every tenant statement is what keeps one organization's rows from
//! another's (on PostgreSQL it holds twice over, with the policies). No
//! repository writes that filter by hand: it asks for it with
//! [`Scoped::scoped`] (the organization of a tenant context),
//! [`Scoped::in_org`] (an organization named otherwise, for jobs that walk
//! every organization) or [`Scoped::live`] (the organization, and only while
//! it is not deleted). Only entities with an `org_id` column ([`OrgScoped`])
//! can be scoped, so the filter cannot name the wrong column.

use carapace_tenancy::{OrgId, TenantContext};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, DeleteMany, EntityTrait, QueryFilter, QuerySelect, QueryTrait as _, Select,
    UpdateMany,
};
use uuid::Uuid;

use crate::entity;

/// An entity whose rows belong to one organization (its `org_id` column).
pub(crate) trait OrgScoped: EntityTrait {
    /// The `org_id` column.
    fn org_column() -> Self::Column;
}

macro_rules! org_scoped {
    ($($entity:ident),* $(,)?) => {$(
        impl OrgScoped for entity::$entity::Entity {
            fn org_column() -> Self::Column {
                entity::$entity::Column::OrgId
            }
        }
    )*};
}

org_scoped!(
    patient,
    user,
    session,
    refresh_token,
    security_event,
    password_reset,
    recovery_code,
    service_key,
    care_assignment,
    break_glass,
    org_key,
    audit_event,
    audit_chain,
    audit_checkpoint,
    alert_outbox,
    appointment,
    appointment_reminder,
    reminder_opt_out,
    calendar_feed,
    medication,
    side_effect,
    consent,
    referral,
    incoming_referral,
    verification_task,
    verification_setting,
    verification_transcript,
    assistant_turn,
    login_address,
    mfa_challenge_spent,
    subject_block,
    idempotency_key,
    telephony_account,
    telephony_call,
    telephony_callback,
    telephony_recording,
    telephony_voicemail,
    backend_assertion,
    bulk_export,
    bulk_export_file,
);

/// An organization named by its id or its raw uuid.
pub(crate) trait OrgKey {
    /// The organization's uuid (the `org_id` column's value).
    fn org_uuid(&self) -> Uuid;
}

impl OrgKey for Uuid {
    fn org_uuid(&self) -> Uuid {
        *self
    }
}

impl OrgKey for OrgId {
    fn org_uuid(&self) -> Uuid {
        self.as_uuid()
    }
}

/// A statement confined to one organization's rows.
pub(crate) trait Scoped: Sized {
    /// Only the rows of organization `org`.
    #[must_use]
    fn in_org(self, org: impl OrgKey) -> Self;

    /// Only the rows of `ctx`'s organization.
    #[must_use]
    fn scoped(self, ctx: &TenantContext) -> Self {
        self.in_org(ctx.org())
    }
}

impl<E: OrgScoped> Scoped for Select<E> {
    fn in_org(self, org: impl OrgKey) -> Self {
        self.filter(E::org_column().eq(org.org_uuid()))
    }
}

impl<E: OrgScoped> Scoped for UpdateMany<E> {
    fn in_org(self, org: impl OrgKey) -> Self {
        self.filter(E::org_column().eq(org.org_uuid()))
    }
}

impl<E: OrgScoped> Scoped for DeleteMany<E> {
    fn in_org(self, org: impl OrgKey) -> Self {
        self.filter(E::org_column().eq(org.org_uuid()))
    }
}

/// A read confined to a live organization's rows.
pub(crate) trait Live: Scoped {
    /// Only the rows of `ctx`'s organization, and none once it is deleted
    /// ([`live_org`]).
    #[must_use]
    fn live(self, ctx: &TenantContext) -> Self;
}

impl<E: OrgScoped> Live for Select<E> {
    fn live(self, ctx: &TenantContext) -> Self {
        self.scoped(ctx).filter(live_org(ctx))
    }
}

/// True while `ctx`'s organization is not deleted: every tenant query
/// carries it, so a deleted organization's rows are gone in the same
/// statement and no cache of the directory (or of its data keys) can reach
/// them.
pub(crate) fn live_org(ctx: &TenantContext) -> SimpleExpr {
    use entity::organization;
    let live = organization::Entity::find()
        .select_only()
        .expr(Expr::val(1))
        .filter(organization::Column::Id.eq(ctx.org().as_uuid()))
        .filter(organization::Column::DeletedAt.is_null())
        .into_query();
    Expr::exists(live)
}
