//! [`PatientRepository`] over the `patients` table: each read and write in one tenant transaction with its audit events (group commit for the hot paths).

use super::*;
use crate::db::Run as _;

pub(super) fn scoped(ctx: &TenantContext) -> sea_orm::Select<row::Entity> {
    row::Entity::find().live(ctx)
}

/// The audit event of `action` on patient `id`.
fn event(access: &Access, action: &str, id: Option<PatientId>, outcome: Outcome) -> AuditEvent {
    crate::repo::event(access, action, "patient", id.map(|i| i.as_uuid()), outcome)
}

/// The audit events of a miss: `action` on `id` not found in `access`'s
/// organization, and a cross-tenant attempt when the id is another
/// organization's. The lookup runs either way (the id-hash table holds
/// every organization's ids and nothing else), so both outcomes cost the
/// same statements; only the number of event rows differs.
async fn miss_events(
    tx: &DatabaseTransaction,
    access: &Access,
    id: PatientId,
    action: &str,
) -> Result<Vec<AuditEvent>, StorageError> {
    let elsewhere = patient_id_hash::Entity::find_by_id(id_hash(id))
        .one_in(tx)
        .await?
        .is_some();
    let mut events = vec![event(access, action, Some(id), Outcome::NotFound)];
    if elsewhere {
        events.push(
            access
                .event(
                    "security.cross_tenant_attempt",
                    "security",
                    None,
                    Outcome::Denied,
                )
                .with_detail(format!("patient {id}")),
        );
    }
    Ok(events)
}

/// What a related read found, before decryption.
enum Related {
    Missing,
    Refused(PatientLinks),
    Read(Box<row::Model>),
}

/// Runs a patient `select` in `tx`: the row, and the two relationship
/// flags when the statement asked for them.
async fn select_row(
    tx: &DatabaseTransaction,
    select: sea_orm::Statement,
) -> Result<Option<(row::Model, Option<(bool, bool)>)>, StorageError> {
    use sea_orm::{ConnectionTrait as _, FromQueryResult as _};
    let Some(found) = tx.query_one_raw(select).await.map_err(storage_error)? else {
        return Ok(None);
    };
    let r = row::Model::from_query_result(&found, "").map_err(storage_error)?;
    let relations = match (
        found.try_get::<bool>("", "rel_care_team"),
        found.try_get::<bool>("", "rel_break_glass"),
    ) {
        (Ok(care_team), Ok(break_glass)) => Some((care_team, break_glass)),
        _ => None,
    };
    Ok(Some((r, relations)))
}

impl PatientRepository for SeaPatients {
    async fn create(
        &self,
        access: &Access,
        d: &Demographics,
        care_team: Option<&SubjectId>,
    ) -> Result<Patient, ClinicalError> {
        let ctx = access.tenant();
        // The key first, in its own committed transaction: a key is never
        // used before it is stored.
        let key = self.keys.current(ctx).await?;
        let now = now();
        let id = PatientId::generate();
        let mut row = to_row(&key, ctx.org(), id, d, now, now)?;
        row.account_subject = Set(None);
        let (unit_access, unit_ctx) = (access.clone(), ctx.clone());
        let care_team = care_team.cloned();
        crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (row, access, ctx) = (row.clone(), unit_access.clone(), unit_ctx.clone());
            let care_team = care_team.clone();
            Box::pin(async move {
                // The patient, its id hash and (a new patient has none
                // yet) its first care-team member: one round trip.
                let mut rows = vec![
                    row::Entity::insert(row).into_query(),
                    patient_id_hash::Entity::insert(patient_id_hash::ActiveModel {
                        hash: Set(id_hash(id)),
                    })
                    .into_query(),
                ];
                if let Some(subject) = &care_team {
                    rows.push(
                        new_assignment(&ctx, id, subject, CareRole::Primary, now).into_query(),
                    );
                }
                crate::db::insert_all(tx, rows).await?;
                let written = event(&access, "patient.create", Some(id), Outcome::Allowed)
                    .with_phi_fields(&PHI_FIELDS);
                Ok(((), vec![written]))
            })
        })
        .await?;
        Ok(Patient {
            id,
            org: ctx.org(),
            demographics: d.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    async fn get(&self, access: &Access, id: PatientId) -> Result<Option<Patient>, ClinicalError> {
        let ctx = access.tenant();
        let select = scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .build(self.db.conn().get_database_backend());
        let unit_access = access.clone();
        let found = crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (select, access) = (select.clone(), unit_access.clone());
            Box::pin(async move {
                let found = select_row(tx, select).await?;
                let read = match found {
                    Some(_) => event(&access, "patient.read", Some(id), Outcome::Allowed)
                        .with_phi_fields(&PHI_FIELDS),
                    None => event(&access, "patient.read", Some(id), Outcome::NotFound),
                };
                Ok((found.map(|(r, _)| r), vec![read]))
            })
        })
        .await?;
        match found {
            Some(r) => Ok(self.decrypt_all(ctx, vec![r]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn read_related(
        &self,
        access: &Access,
        id: PatientId,
        subject: &SubjectId,
        now: OffsetDateTime,
        admission: PatientAdmission,
    ) -> Result<RelatedRead, ClinicalError> {
        let ctx = access.tenant();
        let org = ctx.org().as_uuid();
        let care_team = care_assignment::Entity::find()
            .select_only()
            .expr(Expr::val(1))
            .in_org(org)
            .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
            .filter(care_assignment::Column::Subject.eq(subject.as_str()))
            .into_query();
        let glass = break_glass::Entity::find()
            .select_only()
            .expr(Expr::val(1))
            .in_org(org)
            .filter(break_glass::Column::PatientId.eq(id.as_uuid()))
            .filter(break_glass::Column::Subject.eq(subject.as_str()))
            .filter(break_glass::Column::ExpiresAt.gt(now))
            .into_query();
        // The row and both relationships in one statement.
        let select = scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .expr_as(Expr::exists(care_team), "rel_care_team")
            .expr_as(Expr::exists(glass), "rel_break_glass")
            .build(self.db.conn().get_database_backend());
        let subject = subject.clone();
        let unit_access = access.clone();
        // Relationship, decision, audit event and row in one transaction.
        let read = crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (select, access) = (select.clone(), unit_access.clone());
            let subject = subject.clone();
            Box::pin(async move {
                let Some((r, relations)) = select_row(tx, select).await? else {
                    let missed = miss_events(tx, &access, id, "patient.read").await?;
                    return Ok((Related::Missing, missed));
                };
                let (care_team, break_glass) = relations
                    .ok_or_else(|| StorageError::Internal("relationship columns missing".into()))?;
                let links = PatientLinks {
                    care_team,
                    break_glass,
                    own_record: r.account_subject.as_deref() == Some(subject.as_str()),
                };
                if !admission.admits(links) {
                    let refused = event(&access, "patient.read", Some(id), Outcome::Denied);
                    return Ok((Related::Refused(links), vec![refused]));
                }
                let read = event(&access, "patient.read", Some(id), Outcome::Allowed)
                    .with_phi_fields(&PHI_FIELDS);
                Ok((Related::Read(Box::new(r)), vec![read]))
            })
        })
        .await?;
        match read {
            Related::Missing => Ok(RelatedRead::NotFound),
            Related::Refused(links) => Ok(RelatedRead::Denied(links)),
            Related::Read(r) => match self.decrypt_all(ctx, vec![*r]).await?.pop() {
                Some(p) => Ok(RelatedRead::Found(p)),
                None => Ok(RelatedRead::NotFound),
            },
        }
    }

    async fn update(
        &self,
        access: &Access,
        id: PatientId,
        patch: &PatientPatch,
        expected: Option<Version>,
    ) -> Result<Option<Patient>, ClinicalError> {
        let ctx = access.tenant();
        let key = self.keys.current(ctx).await?;
        let tx = self.db.begin_tenant(ctx).await?;
        let mut query = scoped(ctx).filter(row::Column::Id.eq(id.as_uuid()));
        if self.db.backend() == Backend::Postgres {
            query = query.lock_exclusive();
        }
        let Some(current) = query.one_in(&tx).await? else {
            let missing = event(access, "patient.update", Some(id), Outcome::NotFound);
            crate::audit::commit_with(tx, &[missing]).await?;
            return Ok(None);
        };
        if expected.is_some_and(|v| v != Version::of(current.updated_at)) {
            // Nothing read, nothing written: the transaction rolls back.
            return Err(ClinicalError::VersionConflict);
        }
        // Usually the row is under the current key; an older version is
        // fetched (and cached) only after a rotation.
        let mut patient = if i64::from(current.key_version) == i64::from(key.version()) {
            from_row(&key, current)?
        } else {
            let Some(p) = self.decrypt_all(ctx, vec![current]).await?.pop() else {
                return Ok(None);
            };
            p
        };
        patch.apply(&mut patient.demographics);
        // Strictly later than the version it replaces, whatever the clock
        // says: every change is a new version.
        patient.updated_at = now().max(patient.updated_at + time::Duration::microseconds(1));
        // Re-encrypted whole, under the current key.
        to_row(
            &key,
            patient.org,
            patient.id,
            &patient.demographics,
            patient.created_at,
            patient.updated_at,
        )?
        .update(&tx)
        .await
        .map_err(storage_error)?;
        let changed = event(access, "patient.update", Some(id), Outcome::Allowed)
            .with_phi_fields(&patch.fields());
        crate::audit::commit_with(tx, &[changed]).await?;
        Ok(Some(patient))
    }

    async fn delete(&self, access: &Access, id: PatientId) -> Result<bool, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let done = row::Entity::delete_many()
            .scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .run(&tx)
            .await?;
        if done.rows_affected > 0 {
            patient_id_hash::Entity::delete_by_id(id_hash(id))
                .exec(&tx)
                .await
                .map_err(storage_error)?;
        }
        let outcome = Outcome::found(done.rows_affected > 0);
        crate::audit::commit_with(tx, &[event(access, "patient.delete", Some(id), outcome)])
            .await?;
        Ok(done.rows_affected > 0)
    }

    async fn links(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        now: OffsetDateTime,
    ) -> Result<Option<PatientLinks>, ClinicalError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let Some(patient) = patient_row(&tx, ctx, id).await? else {
            return Ok(None);
        };
        let org = ctx.org().as_uuid();
        let care_team = care_assignment::Entity::find()
            .in_org(org)
            .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
            .filter(care_assignment::Column::Subject.eq(subject.as_str()))
            .one_in(&tx)
            .await?
            .is_some();
        let break_glass = break_glass::Entity::find()
            .in_org(org)
            .filter(break_glass::Column::PatientId.eq(id.as_uuid()))
            .filter(break_glass::Column::Subject.eq(subject.as_str()))
            .filter(break_glass::Column::ExpiresAt.gt(now))
            .one_in(&tx)
            .await?
            .is_some();
        commit::<ClinicalError>(tx).await?;
        let own_record = patient.account_subject.as_deref() == Some(subject.as_str());
        Ok(Some(PatientLinks {
            care_team,
            break_glass,
            own_record,
        }))
    }

    async fn assign(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        role: CareRole,
    ) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        if patient_row(&tx, ctx, id).await?.is_none() {
            return Ok(false);
        }
        insert_assignment(&tx, ctx, id, subject, role, now()).await?;
        commit::<ClinicalError>(tx).await?;
        Ok(true)
    }

    async fn care_team(
        &self,
        access: &Access,
        id: PatientId,
    ) -> Result<Option<Vec<(SubjectId, CareRole)>>, ClinicalError> {
        let ctx = access.tenant();
        let missing = || event(access, "patient.care_team", Some(id), Outcome::NotFound);
        let rows = on_patient(&self.db, ctx, id, missing, async |tx| {
            let rows = care_assignment::Entity::find()
                .scoped(ctx)
                .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
                .order_by_asc(care_assignment::Column::CreatedAt)
                .limit(500)
                .all_in(tx)
                .await?;
            let read = event(access, "patient.care_team", Some(id), Outcome::Allowed);
            Ok((rows, vec![read]))
        })
        .await?;
        let Some(rows) = rows else {
            return Ok(None);
        };
        rows.into_iter()
            .map(|r| {
                Ok((
                    SubjectId::parse(&r.subject).map_err(|_| integrity())?,
                    CareRole::parse(&r.role).ok_or_else(integrity)?,
                ))
            })
            .collect::<Result<Vec<_>, ClinicalError>>()
            .map(Some)
    }

    async fn break_glass(
        &self,
        access: &Access,
        id: PatientId,
        subject: &SubjectId,
        reason: &Phi<String>,
        until: OffsetDateTime,
    ) -> Result<bool, ClinicalError> {
        let ctx = access.tenant();
        // The key first (its own transaction), as for patient rows.
        let key = self.keys.current(ctx).await?;
        let missing = || event(access, "patient.break_glass", Some(id), Outcome::NotFound);
        let grant = uuid::Uuid::now_v7();
        let declared = on_patient(&self.db, ctx, id, missing, async |tx| {
            use crate::sealed::break_glass_grants::{REASON, TABLE};
            let sealed_reason =
                Sealer::new(&key, ctx.org(), TABLE, grant).seal(REASON, reason.expose_phi())?;
            break_glass::Entity::insert(break_glass::ActiveModel {
                org_id: Set(ctx.org().as_uuid()),
                id: Set(grant),
                patient_id: Set(id.as_uuid()),
                subject: Set(subject.as_str().to_owned()),
                reason: Set(SEALED_REASON.to_owned()),
                reason_sealed: Set(Some(sealed_reason)),
                expires_at: Set(until),
                created_at: Set(now()),
            })
            .run(tx)
            .await?;
            // The reason is PHI-adjacent free text: the event names the grant
            // (where the reason is kept), not the reason itself.
            let declared = event(access, "patient.break_glass", Some(id), Outcome::Allowed)
                .with_detail(format!("grant {grant} until {until}"));
            Ok(((), vec![declared]))
        })
        .await?;
        Ok(declared.is_some())
    }

    async fn record_miss(
        &self,
        access: &Access,
        id: PatientId,
        action: &str,
    ) -> Result<(), ClinicalError> {
        let (access, action) = (access.clone(), action.to_owned());
        crate::repo::grouped(&self.db, access.org(), move |tx| {
            let (access, action) = (access.clone(), action.clone());
            Box::pin(async move { Ok(((), miss_events(tx, &access, id, &action).await?)) })
        })
        .await?;
        Ok(())
    }

    async fn link_account(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        account: Option<&SubjectId>,
    ) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let done = row::Entity::update_many()
            .col_expr(
                row::Column::AccountSubject,
                Expr::value(account.map(|a| a.as_str().to_owned())),
            )
            .scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .run(&tx)
            .await?;
        commit::<ClinicalError>(tx).await?;
        Ok(done.rows_affected == 1)
    }

    async fn list(&self, access: &Access, q: &PatientQuery) -> Result<PatientPage, ClinicalError> {
        let ctx = access.tenant();
        // Searching needs blind indexes, under every version a row may be
        // under (during a rotation, or before this process learns of one);
        // listing alone does not.
        let keys = match (&q.member_id, &q.name_dob) {
            (None, None) => Vec::new(),
            _ => self.keys.live(ctx).await?,
        };
        let member_idx = q.member_id.as_ref().map(|m| {
            keys.iter()
                .map(|k| member_index(k, m.expose_phi()))
                .collect::<Vec<_>>()
        });
        let name_dob_idx = q.name_dob.as_ref().map(|(n, d)| {
            keys.iter()
                .map(|k| name_dob_index(k, n.expose_phi(), *d.expose_phi()))
                .collect::<Vec<_>>()
        });
        let limit = usize::from(q.limit.get());
        let mut query = scoped(ctx);
        query = match &q.visibility {
            Visibility::Nothing => {
                return Ok(PatientPage {
                    items: Vec::new(),
                    next_after: None,
                });
            }
            Visibility::Organization => query,
            Visibility::CareTeamOf(subject) => {
                let org = ctx.org().as_uuid();
                let assigned = care_assignment::Entity::find()
                    .select_only()
                    .column(care_assignment::Column::PatientId)
                    .in_org(org)
                    .filter(care_assignment::Column::Subject.eq(subject.as_str()))
                    .into_query();
                let glass = break_glass::Entity::find()
                    .select_only()
                    .column(break_glass::Column::PatientId)
                    .in_org(org)
                    .filter(break_glass::Column::Subject.eq(subject.as_str()))
                    .filter(break_glass::Column::ExpiresAt.gt(OffsetDateTime::now_utc()))
                    .into_query();
                query.filter(
                    Condition::any()
                        .add(row::Column::Id.in_subquery(assigned))
                        .add(row::Column::Id.in_subquery(glass)),
                )
            }
            Visibility::OwnRecordOf(subject) => {
                query.filter(row::Column::AccountSubject.eq(subject.as_str()))
            }
        };
        if let Some(idx) = name_dob_idx {
            query = query.filter(row::Column::NameDobIdx.is_in(idx));
        }
        if let Some(idx) = member_idx {
            query = query.filter(row::Column::MemberIdIdx.is_in(idx));
        }
        if let Some(after) = q.after {
            query = query.filter(row::Column::Id.gt(after.as_uuid()));
        }
        query = match q.updated.after {
            Some((t, true)) => query.filter(row::Column::UpdatedAt.gte(t)),
            Some((t, false)) => query.filter(row::Column::UpdatedAt.gt(t)),
            None => query,
        };
        query = match q.updated.before {
            Some((t, true)) => query.filter(row::Column::UpdatedAt.lte(t)),
            Some((t, false)) => query.filter(row::Column::UpdatedAt.lt(t)),
            None => query,
        };
        let select = query
            .order_by_asc(row::Column::Id)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .build(self.db.conn().get_database_backend());
        let action = if q.member_id.is_some() || q.name_dob.is_some() {
            "patient.search"
        } else {
            "patient.list"
        };
        let unit_access = access.clone();
        let rows = crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (select, access) = (select.clone(), unit_access.clone());
            Box::pin(async move {
                use sea_orm::{ConnectionTrait as _, FromQueryResult as _};
                let rows = tx
                    .query_all_raw(select)
                    .await
                    .map_err(storage_error)?
                    .iter()
                    .map(|r| row::Model::from_query_result(r, ""))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(storage_error)?;
                // One event per patient shown: the accounting of
                // disclosures of each patient is complete.
                let mut shown: Vec<AuditEvent> = rows
                    .iter()
                    .take(limit)
                    .map(|r| {
                        event(
                            &access,
                            action,
                            Some(PatientId::from_uuid(r.id)),
                            Outcome::Allowed,
                        )
                        .with_phi_fields(&PHI_FIELDS)
                    })
                    .collect();
                if shown.is_empty() {
                    shown.push(event(&access, action, None, Outcome::NotFound));
                }
                Ok((rows, shown))
            })
        })
        .await?;
        let mut items = self.decrypt_all(ctx, rows).await?;
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|p| p.id)
        } else {
            None
        };
        Ok(PatientPage { items, next_after })
    }
}
