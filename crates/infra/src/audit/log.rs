//! Reading the trail (queries by organization, actor, resource) and recording security events outside any access.

use super::*;
use crate::db::Fetch as _;

/// Which events to read.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only this resource id.
    pub resource_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only actions of this kind (their verb's).
    pub kind: Option<carapace_audit::ActionKind>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// From this time (inclusive).
    pub from: Option<OffsetDateTime>,
    /// Before this time.
    pub to: Option<OffsetDateTime>,
    /// After this event (the previous page's last).
    pub after: Option<Uuid>,
    /// Only the event with this id.
    pub id: Option<Uuid>,
    /// Page size (capped at [`MAX_PAGE`]).
    pub limit: u64,
}

/// The condition that an event's action is of `kind`: its verb (after
/// the last dot) is one of the kind's, or, for execute, none of any
/// other kind's.
fn kind_filter(kind: carapace_audit::ActionKind) -> sea_orm::Condition {
    use carapace_audit::ActionKind;
    // `_` in a verb is a character, not LIKE's wildcard.
    let ending = |v: &str| {
        sea_orm::sea_query::LikeExpr::new(format!("%.{}", v.replace('_', "\\_"))).escape('\\')
    };
    let verb = |v: &str| audit_event::Column::Action.like(ending(v));
    match kind {
        ActionKind::Execute => ActionKind::ALL
            .iter()
            .flat_map(|k| k.verbs())
            .fold(sea_orm::Condition::all(), |c, v| {
                c.add(audit_event::Column::Action.not_like(ending(v)))
            }),
        other => other
            .verbs()
            .iter()
            .fold(sea_orm::Condition::any(), |c, v| c.add(verb(v))),
    }
}

/// A page of events, oldest first.
#[derive(Clone, Debug)]
pub struct AuditPage {
    /// The events.
    pub items: Vec<AuditEvent>,
    /// The last event's id when there may be more.
    pub next_after: Option<Uuid>,
}

/// The persisted audit log.
#[derive(Clone, Debug)]
pub struct SeaAuditLog {
    db: Database,
}

impl SeaAuditLog {
    /// The log in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records one event in its own transaction.
    pub async fn record(&self, event: &AuditEvent) -> Result<(), StorageError> {
        let ctx = TenantContext::new(event.org, event.actor.clone());
        let tx = self.db.begin_tenant(&ctx).await?;
        append(&tx, std::slice::from_ref(event)).await?;
        tx.commit().await.map_err(storage_error)
    }

    /// Reads events of `access`'s organization; the read is itself
    /// recorded (`audit.read`), in the same transaction.
    pub async fn query(
        &self,
        access: &Access,
        query: &AuditQuery,
        read_event: AuditEvent,
    ) -> Result<AuditPage, StorageError> {
        let tx = self.db.begin_tenant(access.tenant()).await?;
        let mut select = audit_event::Entity::find().in_org(access.org());
        if let Some(a) = &query.actor {
            select = select.filter(audit_event::Column::Actor.eq(a.as_str()));
        }
        if let Some(t) = &query.resource_type {
            select = select.filter(audit_event::Column::ResourceType.eq(t.as_str()));
        }
        if let Some(r) = &query.resource_id {
            select = select.filter(audit_event::Column::ResourceId.eq(r.as_str()));
        }
        if let Some(a) = &query.action {
            select = select.filter(audit_event::Column::Action.eq(a.as_str()));
        }
        if let Some(kind) = query.kind {
            select = select.filter(kind_filter(kind));
        }
        if let Some(o) = query.outcome {
            select = select.filter(audit_event::Column::Outcome.eq(o.as_str()));
        }
        if let Some(from) = query.from {
            select = select.filter(audit_event::Column::RecordedAt.gte(from));
        }
        if let Some(to) = query.to {
            select = select.filter(audit_event::Column::RecordedAt.lt(to));
        }
        if let Some(id) = query.id {
            select = select.filter(audit_event::Column::Id.eq(id));
        }
        if let Some(after) = query.after {
            // Ids are UUIDv7: time-ordered, so the id alone is the cursor.
            select = select.filter(audit_event::Column::Id.gt(after));
        }
        let limit = query.limit.clamp(1, MAX_PAGE);
        let rows = select
            .order_by_asc(audit_event::Column::Id)
            .limit(limit + 1)
            .all_in(&tx)
            .await?;
        append(&tx, std::slice::from_ref(&read_event)).await?;
        tx.commit().await.map_err(storage_error)?;
        let more = u64::try_from(rows.len()).unwrap_or(u64::MAX) > limit;
        let items: Vec<AuditEvent> = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|r| {
                AuditEvent::from_canonical(r.body.as_bytes())
                    .ok_or_else(|| StorageError::Internal("unreadable audit event".into()))
            })
            .collect::<Result<_, _>>()?;
        let next_after = more.then(|| items.last().map(|e| e.id)).flatten();
        Ok(AuditPage { items, next_after })
    }
}

/// How many events of one outcome were recorded on one UTC day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayCount {
    /// The day (UTC).
    pub day: time::Date,
    /// The outcome.
    pub outcome: Outcome,
    /// Events.
    pub count: u64,
}

impl SeaAuditLog {
    /// Counts `access`'s organization's events per UTC day and outcome,
    /// recorded in `[from, to)`, days in order; the read is itself
    /// recorded (`read_event`), in the same transaction.
    pub async fn daily_counts(
        &self,
        access: &Access,
        from: OffsetDateTime,
        to: OffsetDateTime,
        read_event: AuditEvent,
    ) -> Result<Vec<DayCount>, StorageError> {
        let tx = self.db.begin_tenant(access.tenant()).await?;
        let backend = tx.get_database_backend();
        // The day in UTC: PostgreSQL's timestamptz, SQLite's stored text
        // with its offset (date() converts to UTC).
        let day = if backend == sea_orm::DbBackend::Postgres {
            "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        } else {
            "date(recorded_at)"
        };
        let rows = tx
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT {day} AS day, outcome, COUNT(*) AS n FROM audit_events
                     WHERE org_id = $1 AND recorded_at >= $2 AND recorded_at < $3
                     GROUP BY 1, 2 ORDER BY 1, 2"
                ),
                vec![access.org().as_uuid().into(), from.into(), to.into()],
            ))
            .await
            .map_err(storage_error)?;
        append(&tx, std::slice::from_ref(&read_event)).await?;
        tx.commit().await.map_err(storage_error)?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        rows.iter()
            .map(|r| {
                let unreadable = || StorageError::Internal("unreadable daily audit count".into());
                let day: String = r.try_get("", "day").map_err(|_| unreadable())?;
                let outcome: String = r.try_get("", "outcome").map_err(|_| unreadable())?;
                let n: i64 = r.try_get("", "n").map_err(|_| unreadable())?;
                Ok(DayCount {
                    day: time::Date::parse(&day, format).map_err(|_| unreadable())?,
                    outcome: Outcome::parse(&outcome).ok_or_else(unreadable)?,
                    count: u64::try_from(n).map_err(|_| unreadable())?,
                })
            })
            .collect()
    }
}

impl carapace_clinical::access::AuditTrail for SeaAuditLog {
    async fn record(&self, event: &AuditEvent) -> Result<(), StorageError> {
        SeaAuditLog::record(self, event).await
    }
}

impl SecurityEventSink for SeaAuditLog {
    fn emit(&self, event: SecurityEvent) -> AuditFuture<'_> {
        Box::pin(async move {
            tracing::warn!(
                security_event = event.kind.as_str(),
                org = %event.org,
                subject = %event.subject,
                detail = %event.detail,
                "security event"
            );
            self.record(&event.to_audit_event())
                .await
                .map_err(carapace_audit::AuditError)
        })
    }
}
