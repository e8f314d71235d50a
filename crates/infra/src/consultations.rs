//! Consents and referrals over SeaORM. A referral is written in the
//! patient's organization and mirrored in the receiving one, each in its
//! own tenant transaction with its own audit event; if the mirror cannot be
//! written the referral is removed again, so no half-made referral stays.

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::consultation::{
    Consent, ConsentId, ConsultationRepository, NewConsent, Referral, ReferralId, Section,
};
use carapace_clinical::patient::PatientId;
use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::{consent as c, incoming_referral as inc, referral as r};
use crate::repo::{self, on_patient};
use crate::scope::{Live as _, Scoped as _};

/// Most consents or referrals one listing returns.
const LIST_MAX: u64 = 500;

/// [`ConsultationRepository`] over `consents`, `referrals` and
/// `incoming_referrals`.
#[derive(Clone, Debug)]
pub struct SeaConsultations {
    db: Database,
}

impl SeaConsultations {
    /// Consultations in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn integrity() -> ClinicalError {
    ClinicalError::Storage(crate::fields::integrity())
}

fn subject(s: &str) -> Result<SubjectId, ClinicalError> {
    SubjectId::parse(s).map_err(|_| integrity())
}

fn consent_of(m: c::Model) -> Result<Consent, ClinicalError> {
    let sections = m
        .sections
        .split(',')
        .map(|s| Section::parse(s).ok_or_else(integrity))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Consent {
        id: ConsentId::from_uuid(m.id),
        patient: PatientId::from_uuid(m.patient_id),
        recipient_org: OrgId::from_uuid(m.recipient_org),
        recipient: subject(&m.recipient)?,
        sections,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        recorded_by: subject(&m.recorded_by)?,
        created_at: m.created_at,
    })
}

fn referral_of(m: r::Model) -> Result<Referral, ClinicalError> {
    Ok(Referral {
        id: ReferralId::from_uuid(m.id),
        org: OrgId::from_uuid(m.org_id),
        patient: PatientId::from_uuid(m.patient_id),
        consent: ConsentId::from_uuid(m.consent_id),
        from: subject(&m.from_subject)?,
        to_org: OrgId::from_uuid(m.to_org),
        to: subject(&m.to_subject)?,
        created_at: m.created_at,
    })
}

fn mirrored(m: inc::Model) -> Result<Referral, ClinicalError> {
    Ok(Referral {
        id: ReferralId::from_uuid(m.id),
        org: OrgId::from_uuid(m.source_org),
        patient: PatientId::from_uuid(m.patient_id),
        consent: ConsentId::from_uuid(m.consent_id),
        from: subject(&m.from_subject)?,
        to_org: OrgId::from_uuid(m.org_id),
        to: subject(&m.to_subject)?,
        created_at: m.created_at,
    })
}

fn patient_event(
    access: &Access,
    action: &str,
    patient: PatientId,
    outcome: Outcome,
) -> AuditEvent {
    repo::event(access, action, "patient", Some(patient), outcome)
}

impl ConsultationRepository for SeaConsultations {
    async fn record_consent(
        &self,
        access: &Access,
        patient: PatientId,
        new: &NewConsent,
    ) -> Result<Option<Consent>, ClinicalError> {
        let ctx = access.tenant();
        let missing = || patient_event(access, "consent.create", patient, Outcome::NotFound);
        let names: Vec<&str> = new.sections.iter().map(|s| s.as_str()).collect();
        let row = c::Model {
            org_id: ctx.org().as_uuid(),
            id: Uuid::now_v7(),
            patient_id: patient.as_uuid(),
            recipient_org: new.recipient_org.as_uuid(),
            recipient: new.recipient.as_str().to_owned(),
            sections: names.join(","),
            expires_at: new.expires_at,
            revoked_at: None,
            recorded_by: ctx.actor().as_str().to_owned(),
            created_at: carapace_audit::event::now_micros(),
        };
        let made = on_patient(&self.db, ctx, patient, missing, async |tx| {
            c::Entity::insert(c::ActiveModel::from(row.clone()))
                .run(tx)
                .await?;
            let made = patient_event(access, "consent.create", patient, Outcome::Allowed)
                .with_detail(format!(
                    "consent {} for {} of org {}: {} until {}",
                    row.id, row.recipient, row.recipient_org, row.sections, row.expires_at
                ));
            Ok(((), vec![made]))
        })
        .await?;
        made.map(|()| consent_of(row)).transpose()
    }

    async fn consents(
        &self,
        access: &Access,
        patient: PatientId,
    ) -> Result<Option<Vec<Consent>>, ClinicalError> {
        let ctx = access.tenant();
        let missing = || patient_event(access, "consent.list", patient, Outcome::NotFound);
        let found = on_patient(&self.db, ctx, patient, missing, async |tx| {
            let rows = c::Entity::find()
                .scoped(ctx)
                .filter(c::Column::PatientId.eq(patient.as_uuid()))
                .order_by_asc(c::Column::Id)
                .limit(LIST_MAX)
                .all_in(tx)
                .await?;
            let listed = patient_event(access, "consent.list", patient, Outcome::Allowed);
            Ok((rows, vec![listed]))
        })
        .await?;
        found
            .map(|rows| rows.into_iter().map(consent_of).collect::<Result<_, _>>())
            .transpose()
    }

    async fn revoke_consent(
        &self,
        access: &Access,
        patient: PatientId,
        id: ConsentId,
        now: OffsetDateTime,
    ) -> Result<bool, ClinicalError> {
        let id = id.as_uuid();
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let done = c::Entity::update_many()
            .col_expr(c::Column::RevokedAt, Expr::value(Some(now)))
            .scoped(ctx)
            .filter(c::Column::PatientId.eq(patient.as_uuid()))
            .filter(c::Column::Id.eq(id))
            .filter(c::Column::RevokedAt.is_null())
            .run(&tx)
            .await?;
        let outcome = Outcome::found(done.rows_affected == 1);
        let revoked = patient_event(access, "consent.revoke", patient, outcome)
            .with_detail(format!("consent {id}"));
        crate::audit::commit_with(tx, &[revoked]).await?;
        Ok(done.rows_affected == 1)
    }

    async fn consent(
        &self,
        ctx: &TenantContext,
        id: ConsentId,
    ) -> Result<Option<Consent>, ClinicalError> {
        let id = id.as_uuid();
        let select = c::Entity::find().live(ctx).filter(c::Column::Id.eq(id));
        let row = crate::repo::read_one(&self.db, ctx, select).await?;
        row.map(consent_of).transpose()
    }

    async fn refer(&self, access: &Access, x: &Referral) -> Result<(), ClinicalError> {
        let source = access.tenant();
        let tx = self.db.begin_tenant(source).await?;
        r::Entity::insert(r::ActiveModel {
            org_id: Set(x.org.as_uuid()),
            id: Set(x.id.as_uuid()),
            patient_id: Set(x.patient.as_uuid()),
            consent_id: Set(x.consent.as_uuid()),
            from_subject: Set(x.from.as_str().to_owned()),
            to_org: Set(x.to_org.as_uuid()),
            to_subject: Set(x.to.as_str().to_owned()),
            created_at: Set(x.created_at),
        })
        .run(&tx)
        .await?;
        let detail = format!("referral {} to {} of org {}", x.id, x.to, x.to_org);
        let made = patient_event(access, "referral.create", x.patient, Outcome::Allowed)
            .with_detail(detail);
        crate::audit::commit_with(tx, &[made]).await?;
        // The mirror, in the receiving organization's own transaction.
        let receiving = access.in_org(x.to_org);
        let mirror = async {
            let tx = self.db.begin_tenant(receiving.tenant()).await?;
            inc::Entity::insert(inc::ActiveModel {
                org_id: Set(x.to_org.as_uuid()),
                id: Set(x.id.as_uuid()),
                source_org: Set(x.org.as_uuid()),
                patient_id: Set(x.patient.as_uuid()),
                consent_id: Set(x.consent.as_uuid()),
                from_subject: Set(x.from.as_str().to_owned()),
                to_subject: Set(x.to.as_str().to_owned()),
                created_at: Set(x.created_at),
            })
            .run(&tx)
            .await?;
            let received = receiving
                .event(
                    "referral.received",
                    "referral",
                    Some(x.id.to_string()),
                    Outcome::Allowed,
                )
                .with_detail(format!("from {} of org {}", x.from, x.org));
            crate::audit::commit_with(tx, &[received]).await
        };
        if let Err(e) = mirror.await {
            let tx = self.db.begin_tenant(source).await?;
            r::Entity::delete_many()
                .in_org(x.org)
                .filter(r::Column::Id.eq(x.id.as_uuid()))
                .run(&tx)
                .await?;
            let undone =
                patient_event(access, "referral.create", x.patient, Outcome::Error).with_detail(
                    format!("referral {} withdrawn: the receiving side failed", x.id),
                );
            crate::audit::commit_with(tx, &[undone]).await?;
            return Err(e.into());
        }
        Ok(())
    }

    async fn referrals(
        &self,
        access: &Access,
        incoming: bool,
    ) -> Result<Vec<Referral>, ClinicalError> {
        let ctx = access.tenant();
        let me = ctx.actor().as_str();
        let tx = self.db.begin_tenant(ctx).await?;
        let found = if incoming {
            inc::Entity::find()
                .scoped(ctx)
                .filter(inc::Column::ToSubject.eq(me))
                .order_by_asc(inc::Column::Id)
                .limit(LIST_MAX)
                .all_in(&tx)
                .await?
                .into_iter()
                .map(mirrored)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            r::Entity::find()
                .scoped(ctx)
                .filter(r::Column::FromSubject.eq(me))
                .order_by_asc(r::Column::Id)
                .limit(LIST_MAX)
                .all_in(&tx)
                .await?
                .into_iter()
                .map(referral_of)
                .collect::<Result<Vec<_>, _>>()?
        };
        let listed = access
            .event("referral.list", "referral", None, Outcome::Allowed)
            .with_detail(format!(
                "{} {} referrals",
                found.len(),
                if incoming { "incoming" } else { "outgoing" }
            ));
        crate::audit::commit_with(tx, &[listed]).await?;
        Ok(found)
    }

    async fn referral(
        &self,
        access: &Access,
        id: ReferralId,
    ) -> Result<Option<Referral>, ClinicalError> {
        let ctx = access.tenant();
        let (me, uid) = (ctx.actor().as_str(), id.as_uuid());
        let tx = self.db.begin_tenant(ctx).await?;
        let received = inc::Entity::find()
            .scoped(ctx)
            .filter(inc::Column::Id.eq(uid))
            .filter(inc::Column::ToSubject.eq(me))
            .one_in(&tx)
            .await?;
        let found = match received {
            Some(row) => Some(mirrored(row)?),
            None => r::Entity::find()
                .scoped(ctx)
                .filter(r::Column::Id.eq(uid))
                .filter(r::Column::FromSubject.eq(me))
                .one_in(&tx)
                .await?
                .map(referral_of)
                .transpose()?,
        };
        let outcome = Outcome::found(found.is_some());
        let read = access.event("referral.read", "referral", Some(id.to_string()), outcome);
        crate::audit::commit_with(tx, &[read]).await?;
        Ok(found)
    }

    async fn incoming(
        &self,
        access: &Access,
        id: ReferralId,
    ) -> Result<Option<Referral>, ClinicalError> {
        let id = id.as_uuid();
        let ctx = access.tenant();
        let select = inc::Entity::find()
            .live(ctx)
            .filter(inc::Column::Id.eq(id))
            .filter(inc::Column::ToSubject.eq(ctx.actor().as_str()));
        let row = crate::repo::read_one(&self.db, ctx, select).await?;
        row.map(mirrored).transpose()
    }

    async fn shared(
        &self,
        source: &TenantContext,
        id: ReferralId,
    ) -> Result<Option<(Referral, Consent)>, ClinicalError> {
        let id = id.as_uuid();
        let tx = self.db.begin_tenant_read(source).await?;
        let found = r::Entity::find()
            .live(source)
            .filter(r::Column::Id.eq(id))
            .one_in(&tx)
            .await?;
        let Some(referral) = found else {
            tx.commit().await.map_err(storage_error)?;
            return Ok(None);
        };
        let consent = c::Entity::find()
            .scoped(source)
            .filter(c::Column::Id.eq(referral.consent_id))
            .one_in(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)?;
        match consent {
            Some(c) => Ok(Some((referral_of(referral)?, consent_of(c)?))),
            None => Ok(None),
        }
    }
}
