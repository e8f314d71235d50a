use super::*;

/// A chained SQLite trail of `n` reads, with the triggers dropped so the
/// test can play the attacker.
async fn tamperable(
    n: usize,
) -> (
    tempfile::TempDir,
    Database,
    TenantContext,
    sea_orm::DatabaseConnection,
) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 1..n {
        repo.get(&acc(&ctx), p.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for t in ["audit_events", "audit_chain", "audit_checkpoints"] {
        for suffix in ["no_update", "no_delete"] {
            raw.execute_unprepared(&format!("DROP TRIGGER {t}_{suffix}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    (dir, db, ctx, raw)
}

async fn finding(db: &Database, ctx: &TenantContext) -> Option<(u64, Problem)> {
    verify_org(db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .chain
        .err()
        .map(|f| (f.position, f.problem))
}

async fn exec(raw: &sea_orm::DatabaseConnection, sql: &str) {
    raw.execute_raw(Statement::from_string(DbBackend::Sqlite, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn verify_names_each_kind_of_tampering_at_its_position() {
    // Intact.
    let (_d, db, ctx, _raw) = tamperable(8).await;
    assert_eq!(finding(&db, &ctx).await, None);

    // Modified: event 5 now says "denied".
    let (_d, db, ctx, raw) = tamperable(8).await;
    exec(&raw, "UPDATE audit_events SET body = replace(body, '\"allowed\"', '\"denied\"') WHERE id = (SELECT event_id FROM audit_chain WHERE position = 5)").await;
    assert_eq!(finding(&db, &ctx).await, Some((5, Problem::Modified)));

    // Deleted event (its chain entry left behind).
    let (_d, db, ctx, raw) = tamperable(8).await;
    exec(
        &raw,
        "DELETE FROM audit_events WHERE id = (SELECT event_id FROM audit_chain WHERE position = 3)",
    )
    .await;
    assert_eq!(finding(&db, &ctx).await, Some((3, Problem::Deleted)));

    // Deleted event and chain entry.
    let (_d, db, ctx, raw) = tamperable(8).await;
    exec(
        &raw,
        "DELETE FROM audit_events WHERE id = (SELECT event_id FROM audit_chain WHERE position = 4)",
    )
    .await;
    exec(&raw, "DELETE FROM audit_chain WHERE position = 4").await;
    assert_eq!(
        finding(&db, &ctx).await,
        Some((
            4,
            Problem::Sequence {
                expected: 4,
                found: 5
            }
        ))
    );

    // Reordered: positions 2 and 3 swapped.
    let (_d, db, ctx, raw) = tamperable(8).await;
    exec(
        &raw,
        "UPDATE audit_chain SET position = 1000 WHERE position = 2",
    )
    .await;
    exec(
        &raw,
        "UPDATE audit_chain SET position = 2 WHERE position = 3",
    )
    .await;
    exec(
        &raw,
        "UPDATE audit_chain SET position = 3 WHERE position = 1000",
    )
    .await;
    assert_eq!(finding(&db, &ctx).await, Some((2, Problem::BrokenLink)));

    // Inserted: an entry spliced in at 6 (later ones moved up by one).
    let (_d, db, ctx, raw) = tamperable(8).await;
    for pos in (6..=8).rev() {
        exec(
            &raw,
            &format!(
                "UPDATE audit_chain SET position = {} WHERE position = {pos}",
                pos + 1
            ),
        )
        .await;
    }
    // A copy of event 2 under a new id, with event 2's hashes.
    exec(&raw, "INSERT INTO audit_events (org_id, id, recorded_at, actor, action, resource_type, resource_id, outcome, body) SELECT org_id, randomblob(16), recorded_at, actor, action, resource_type, resource_id, outcome, body FROM audit_events WHERE id = (SELECT event_id FROM audit_chain WHERE position = 2)").await;
    exec(&raw, "INSERT INTO audit_chain (org_id, position, event_id, leaf, link) SELECT c.org_id, 6, (SELECT id FROM audit_events ORDER BY rowid DESC LIMIT 1), c.leaf, c.link FROM audit_chain c WHERE c.position = 2").await;
    assert!(
        matches!(finding(&db, &ctx).await, Some((6, _))),
        "caught at the inserted position"
    );

    // Truncated tail: the last three positions gone, events and all.
    let (_d, db, ctx, raw) = tamperable(8).await;
    exec(&raw, "DELETE FROM audit_events WHERE id IN (SELECT event_id FROM audit_chain WHERE position > 5)").await;
    exec(&raw, "DELETE FROM audit_chain WHERE position > 5").await;
    assert_eq!(
        finding(&db, &ctx).await,
        Some((
            6,
            Problem::Truncated {
                ends_at: 5,
                signed: 8
            }
        ))
    );

    // A forged checkpoint.
    let (_d, db, ctx, raw) = tamperable(8).await;
    exec(&raw, "UPDATE audit_checkpoints SET position = 7").await;
    assert_eq!(finding(&db, &ctx).await, Some((7, Problem::BadSignature)));
}

/// Each searchable column, and an edit an attacker would make to it
/// (hiding a user's events from `?actor=`, turning a denial into an
/// allowance, moving an event in time, pointing it at another resource).
const COLUMN_EDITS: [(&str, &str); 6] = [
    ("actor", "actor = 'system:purge'"),
    ("action", "action = 'patient.list'"),
    ("resource_type", "resource_type = 'user'"),
    ("resource_id", "resource_id = 'elsewhere'"),
    ("outcome", "outcome = 'denied'"),
    ("recorded_at", "recorded_at = '2001-01-01 00:00:00+00'"),
];

#[tokio::test]
async fn sqlite_verify_finds_an_edit_of_each_searchable_column() {
    for (column, set) in COLUMN_EDITS {
        let (_d, db, ctx, raw) = tamperable(8).await;
        exec(&raw, &format!("UPDATE audit_events SET {set} WHERE id = (SELECT event_id FROM audit_chain WHERE position = 5)")).await;
        assert_eq!(
            finding(&db, &ctx).await,
            Some((5, Problem::ColumnModified { column })),
            "{column}"
        );
    }
}

#[tokio::test]
async fn postgres_verify_finds_a_superusers_edit_of_each_searchable_column() {
    let Some(pg) = carapace_testkit::postgres_fresh("audit_column_edits", true).await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    for (column, set) in COLUMN_EDITS {
        // An organization per column, each with a chained trail of eight.
        let ctx = new_org(&db).await;
        let p = repo
            .create(&acc(&ctx), &demographics("Ann", None), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 1..8 {
            repo.get(&acc(&ctx), p.id)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        chainer(&db)
            .chain_org(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(finding(&db, &ctx).await, None, "intact before the edit");
        // The superuser, with the append-only triggers off for the session.
        let org = ctx.org();
        carapace_testkit::exec_as_owner(
            &pg,
            &format!(
                "SET session_replication_role = replica;
                 UPDATE audit_events SET {set}
                 WHERE org_id = '{org}' AND id = (SELECT event_id FROM audit_chain
                                                   WHERE org_id = '{org}' AND position = 5);"
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            finding(&db, &ctx).await,
            Some((5, Problem::ColumnModified { column })),
            "{column}"
        );
    }
}
