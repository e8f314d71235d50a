//! Alert delivery: alerts are queued in `alert_outbox` when the security
//! event that raises them is chained, in the chaining transaction
//! (`enqueue_for`, called by the audit chainer: exactly once per event,
//! about a second after it commits, and never on the request path), then
//! POSTed as HMAC-signed JSON to the configured webhook through the
//! SSRF-safe client, retried with exponential backoff until delivered
//! ([`AlertDeliverer`]). Nothing is lost on a restart: the queue is the
//! database.

use std::time::Duration;

use carapace_audit::AuditEvent;
use carapace_audit::alerts::{
    AlertPayload, AlertRule, FAILED_LOGIN_WINDOW_SECS, rule_for, webhook_signature,
};
use carapace_tenancy::{OrgId, StorageError, SubjectId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::{alert_outbox, audit_event};
use crate::outbound::SafeHttp;
use crate::scope::Scoped as _;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Alerts sent per organization and pass.
const BATCH: u64 = 50;

/// Queues the alert `event` raises, if any, on `conn` (the transaction
/// that chains it). A failed-login burst counts the failures up to and
/// including this one, so the answer does not depend on when it runs.
pub(crate) async fn enqueue_for<C: ConnectionTrait>(
    conn: &C,
    event: &AuditEvent,
) -> Result<Option<AlertRule>, StorageError> {
    let failures = if event.action == "security.login_failed" {
        match &event.resource_id {
            Some(account) => audit_event::Entity::find()
                .in_org(event.org)
                .filter(audit_event::Column::Action.eq("security.login_failed"))
                .filter(audit_event::Column::ResourceId.eq(account.as_str()))
                .filter(audit_event::Column::Id.lte(event.id))
                .filter(
                    audit_event::Column::RecordedAt
                        .gte(event.at - time::Duration::seconds(FAILED_LOGIN_WINDOW_SECS)),
                )
                .count(conn)
                .await
                .map_err(storage_error)?,
            None => 0,
        }
    } else {
        0
    };
    let Some(rule) = rule_for(event, failures) else {
        return Ok(None);
    };
    let payload = serde_json::to_string(&AlertPayload { alert: rule, event })
        .map_err(|e| StorageError::Internal(e.to_string().into()))?;
    let now = OffsetDateTime::now_utc();
    alert_outbox::Entity::insert(alert_outbox::ActiveModel {
        org_id: Set(event.org.as_uuid()),
        id: Set(uuid::Uuid::now_v7()),
        rule: Set(rule.as_str().to_owned()),
        payload: Set(payload),
        created_at: Set(now),
        attempts: Set(0),
        next_attempt_at: Set(now),
        delivered_at: Set(None),
        last_error: Set(None),
    })
    .run(conn)
    .await?;
    Ok(Some(rule))
}

/// The next wait after `attempts` failed attempts: 2^n seconds, at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(12)).min(MAX_BACKOFF)
}

/// Where alerts go.
#[derive(Clone)]
pub struct WebhookTarget {
    /// The receiver's URL.
    pub url: String,
    /// The HMAC key shared with the receiver.
    pub secret: SecretString,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Sends queued alerts.
#[derive(Debug)]
pub struct AlertDeliverer {
    db: Database,
    http: SafeHttp,
    target: WebhookTarget,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Alerts the receiver accepted.
    pub delivered: u64,
    /// Attempts that failed (retried later).
    pub failed: u64,
}

impl AlertDeliverer {
    /// A deliverer to `target` through `http`.
    pub fn new(db: Database, http: SafeHttp, target: WebhookTarget) -> Self {
        Self { db, http, target }
    }

    /// One pass over every organization's due alerts.
    pub async fn run_once(&self) -> Result<DeliveryReport, StorageError> {
        let mut report = DeliveryReport::default();
        for org in crate::organizations::every_org(&self.db).await? {
            let r = self.deliver_org(org).await?;
            report.delivered += r.delivered;
            report.failed += r.failed;
        }
        Ok(report)
    }

    async fn deliver_org(&self, org: OrgId) -> Result<DeliveryReport, StorageError> {
        let ctx = TenantContext::new(
            org,
            SubjectId::parse("system:alerts").unwrap_or_else(|_| unreachable!("static subject")),
        );
        let now = OffsetDateTime::now_utc();
        let tx = self.db.begin_tenant(&ctx).await?;
        let mut due = alert_outbox::Entity::find()
            .in_org(org)
            .filter(alert_outbox::Column::DeliveredAt.is_null())
            .filter(alert_outbox::Column::NextAttemptAt.lte(now))
            .order_by_asc(alert_outbox::Column::Id)
            .limit(BATCH);
        if self.db.backend() == crate::Backend::Postgres {
            // Several servers share the queue: each alert goes out once.
            due = due.lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        let rows = due.all_in(&tx).await?;
        let mut report = DeliveryReport::default();
        for row in rows {
            let timestamp = OffsetDateTime::now_utc().unix_timestamp();
            let body = row.payload.clone().into_bytes();
            let signature = webhook_signature(
                self.target.secret.expose_secret().as_bytes(),
                timestamp,
                &body,
            );
            let sent = self
                .http
                .post_json(
                    &self.target.url,
                    &[
                        ("x-carapace-signature", signature),
                        ("x-carapace-timestamp", timestamp.to_string()),
                        ("x-carapace-alert-id", row.id.to_string()),
                    ],
                    body,
                )
                .await;
            let attempts = row.attempts.saturating_add(1);
            let mut update = alert_outbox::ActiveModel {
                org_id: Set(row.org_id),
                id: Set(row.id),
                attempts: Set(attempts),
                ..Default::default()
            };
            match sent {
                Ok(_) => {
                    update.delivered_at = Set(Some(OffsetDateTime::now_utc()));
                    update.last_error = Set(None);
                    report.delivered += 1;
                }
                Err(e) => {
                    let wait = backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
                    update.next_attempt_at = Set(OffsetDateTime::now_utc() + wait);
                    let mut why = e.to_string();
                    why.truncate(500);
                    tracing::warn!(alert = %row.id, rule = %row.rule, error = %why, retry_in_secs = wait.as_secs(), "alert delivery failed");
                    update.last_error = Set(Some(why));
                    report.failed += 1;
                }
            }
            sea_orm::ActiveModelTrait::update(update, &tx)
                .await
                .map_err(storage_error)?;
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(report)
    }
}
