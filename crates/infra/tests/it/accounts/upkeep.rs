use super::*;

/// Runs `pg` (PostgreSQL placeholders; `?` on SQLite) in a transaction of
/// tenant `org`.
async fn tenant_exec(
    raw: &DatabaseConnection,
    org: uuid::Uuid,
    pg: &str,
    values: Vec<sea_orm::Value>,
) {
    let backend = raw.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        pg.to_owned()
    } else {
        (1..=9)
            .rev()
            .fold(pg.to_owned(), |s, n| s.replace(&format!("${n}"), "?"))
    };
    let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    if backend == DbBackend::Postgres {
        tx.execute_unprepared(&format!("SELECT set_config('app.org_id', '{org}', true)"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    tx.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
}

/// How many rows of `table` organization `org` has (read as that tenant).
async fn queue_rows(raw: &DatabaseConnection, org: uuid::Uuid, table: &str) -> i64 {
    let backend = raw.get_database_backend();
    let placeholder = if backend == DbBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    if backend == DbBackend::Postgres {
        tx.execute_unprepared(&format!("SELECT set_config('app.org_id', '{org}', true)"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!("SELECT COUNT(*) AS n FROM {table} WHERE org_id = {placeholder}"),
            vec![org.into()],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a count"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    row.try_get::<i64>("", "n")
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn purge(url: &str) {
    use carapace_auth::local::ResetStore as _;
    use carapace_infra::accounts::SeaResets;
    use carapace_infra::purge::purge_expired;

    let db = Database::connect(&carapace_infra::DbSettings::new(url.to_owned().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = new_org(&db).await;
    account(&db, &ctx, "old@example.org").await;
    let user = SeaAccounts::new(db.clone())
        .find_by_email(
            &ctx,
            &Email::parse("old@example.org").unwrap_or_else(|| panic!("e")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|a| a.id)
        .unwrap_or_else(|| panic!("account"));
    let sessions = SeaSessions::new(db.clone());
    let now = OffsetDateTime::now_utc();
    let limits = SessionLimits::default();
    let alive = sessions
        .start(&ctx, user, &["pwd"], [1; 32], now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _idle = sessions
        .start(
            &ctx,
            user,
            &["pwd"],
            [2; 32],
            now - time::Duration::hours(1),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _revoked = sessions
        .start(&ctx, user, &["pwd"], [3; 32], now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sessions
            .revoke_by_token(&ctx, [3; 32], now)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let resets = SeaResets::new(db.clone());
    resets
        .create(&ctx, user, [4; 32], now - time::Duration::minutes(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    resets
        .create(&ctx, user, [5; 32], now + time::Duration::minutes(29))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Queues: a delivered alert and an anchored checkpoint from 40 days
    // ago go; yesterday's and anything still pending stay.
    let raw = sea_orm::Database::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let org = ctx.org().as_uuid();
    let old = now - time::Duration::days(40);
    let recent = now - time::Duration::days(1);
    for (delivered, created) in [(Some(old), old), (Some(recent), old), (None, old)] {
        tenant_exec(
            &raw,
            org,
            "INSERT INTO alert_outbox (org_id, id, rule, payload, created_at, next_attempt_at, delivered_at) VALUES ($1, $2, 'break_glass', '{}', $3, $4, $5)",
            vec![org.into(), uuid::Uuid::now_v7().into(), created.into(), created.into(), delivered.into()],
        )
        .await;
    }
    for (position, anchored) in [(1_i64, Some(old)), (2, Some(recent)), (3, None)] {
        tenant_exec(
            &raw,
            org,
            "INSERT INTO audit_witness_queue (org_id, kind, position, queued_at, anchored_at) VALUES ($1, 'head', $2, $3, $4)",
            vec![org.into(), position.into(), old.into(), anchored.into()],
        )
        .await;
    }
    assert_eq!(queue_rows(&raw, org, "alert_outbox").await, 3);
    let report = purge_expired(&db, now, limits)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.sessions >= 2 && report.resets >= 1, "{report:?}");
    assert_eq!(report.queued, 2, "{report:?}");
    assert_eq!(queue_rows(&raw, org, "alert_outbox").await, 2);
    assert_eq!(queue_rows(&raw, org, "audit_witness_queue").await, 2);
    if raw.get_database_backend() == DbBackend::Postgres {
        // The server's role cannot make anything still pending vanish.
        for table in ["alert_outbox", "audit_witness_queue"] {
            let sql = format!("DELETE FROM {table} WHERE org_id = $1");
            tenant_exec(&raw, org, &sql, vec![org.into()]).await;
            assert_eq!(
                queue_rows(&raw, org, table).await,
                1,
                "{table}: the pending row stays"
            );
        }
    }
    // What was live still works; what was purged is gone.
    match sessions
        .rotate(&ctx, [1; 32], [6; 32], vec![], now, limits)
        .await
    {
        Ok(Rotation::Rotated { session, .. }) => assert_eq!(session, alive),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        sessions
            .rotate(&ctx, [2; 32], [7; 32], vec![], now, limits)
            .await,
        Ok(Rotation::Invalid)
    ));
    let hash = hash_password(&SecretString::from("another fine passphrase".to_owned()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        resets
            .complete(&ctx, [5; 32], hash.clone(), now)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    assert!(
        resets
            .complete(&ctx, [4; 32], hash, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    let again = purge_expired(&db, now, limits)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        again.resets >= 1,
        "the now-used code goes next time: {again:?}"
    );
}

#[tokio::test]
async fn sqlite_purge_removes_dead_sessions_and_spent_reset_codes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    crate::support::sqlite(&dir).await.close().await;
    purge(&format!("sqlite://{}/carapace.db", dir.path().display())).await;
}

#[tokio::test]
async fn postgres_purge_removes_dead_sessions_and_spent_reset_codes() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_purge_removes_dead_sessions_and_spent_reset_codes")
            .await
    else {
        return;
    };
    purge(&pg.app_url).await;
}

/// KEK rotation re-wraps the TOTP seeds, which are sealed under the KEK
/// itself: after it only the new KEK opens them, a rerun has nothing to
/// do, and a run with a KEK that opens nothing changes nothing.
async fn totp_seeds_follow_the_kek(db: &Database) {
    use carapace_auth::local::mfa::{MfaStore as _, seed_context};
    use carapace_phi_crypto::{LocalSealer, SecretSealer as _};
    let ctx = new_org(db).await;
    account(db, &ctx, "mfa@example.org").await;
    let accounts = SeaAccounts::new(db.clone());
    let email = Email::parse("mfa@example.org").unwrap_or_else(|| panic!("email"));
    let user = accounts
        .find_by_email(&ctx, &email)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("account"))
        .id;
    let (old, new) = (LocalSealer::new(&[1; 32]), LocalSealer::new(&[2; 32]));
    let context = seed_context(&ctx, user);
    let seed = b"a-twenty-byte-seed!!";
    let sealed = old
        .seal(&context, seed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        accounts
            .set_pending_totp(&ctx, user, sealed)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let stored = async || {
        accounts
            .totp_state(&ctx, user)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a seed"))
            .sealed_seed
    };

    let moved = accounts.rewrap_totp_seeds(&ctx, &old, &new).await;
    assert_eq!(moved.ok(), Some(1));
    let now = stored().await;
    assert_eq!(
        new.open(&context, &now).await.ok().as_deref(),
        Some(&seed[..])
    );
    assert!(
        old.open(&context, &now).await.is_err(),
        "the old KEK is done"
    );
    // Interrupted and run again: nothing left to do.
    assert_eq!(
        accounts.rewrap_totp_seeds(&ctx, &old, &new).await.ok(),
        Some(0)
    );
    // Keys that open nothing: refused, nothing changed.
    let (wrong, other) = (LocalSealer::new(&[3; 32]), LocalSealer::new(&[4; 32]));
    assert!(
        accounts
            .rewrap_totp_seeds(&ctx, &wrong, &other)
            .await
            .is_err()
    );
    assert_eq!(stored().await, now);
}

#[tokio::test]
async fn sqlite_totp_seeds_follow_the_kek() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = crate::support::sqlite(&dir).await;
    totp_seeds_follow_the_kek(&db).await;
}

#[tokio::test]
async fn postgres_totp_seeds_follow_the_kek() {
    let Some(pg) = carapace_testkit::postgres("postgres_totp_seeds_follow_the_kek").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    totp_seeds_follow_the_kek(&db).await;
}
