use sea_orm_migration::prelude::*;

/// The alert outbox and the witness queue are work queues: the clean-up
/// job deletes what is done with (alerts delivered, checkpoints anchored)
/// once it is old enough. On PostgreSQL the application role may delete
/// exactly those rows of its tenant and nothing still pending, so even a
/// compromised server cannot make a queued alert or checkpoint vanish.
async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::on_postgres(
        manager,
        "CREATE POLICY alert_outbox_prune_delivered ON alert_outbox
               AS RESTRICTIVE FOR DELETE
               USING (delivered_at IS NOT NULL);
             GRANT DELETE ON alert_outbox TO {app};
             CREATE POLICY audit_witness_queue_prune ON audit_witness_queue
               FOR DELETE
               USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
                      AND anchored_at IS NOT NULL);
             GRANT DELETE ON audit_witness_queue TO {app};",
    )
    .await
}

crate::forward_only!();
