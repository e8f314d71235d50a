use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::APP_ROLE;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The alert outbox and the witness queue are work queues: the clean-up
/// job deletes what is done with (alerts delivered, checkpoints anchored)
/// once it is old enough. On PostgreSQL the application role may delete
/// exactly those rows of its tenant and nothing still pending, so even a
/// compromised server cannot make a queued alert or checkpoint vanish.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&format!(
                "CREATE POLICY alert_outbox_prune_delivered ON alert_outbox
                   AS RESTRICTIVE FOR DELETE
                   USING (delivered_at IS NOT NULL);
                 GRANT DELETE ON alert_outbox TO {APP_ROLE};
                 CREATE POLICY audit_witness_queue_prune ON audit_witness_queue
                   FOR DELETE
                   USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
                          AND anchored_at IS NOT NULL);
                 GRANT DELETE ON audit_witness_queue TO {APP_ROLE};"
            ))
            .await?;
        }
        Ok(())
    }
}
