//! Migrating while another process holds the migration lock for longer
//! than SQLite's busy timeout or PostgreSQL's statement timeout: the
//! migration waits for it and then applies everything, once.

use std::time::{Duration, Instant};

use carapace_infra::{Database, DbSettings};
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, TransactionTrait as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migration_waits_past_busy_timeout_for_a_writer() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}/m.db", dir.path().display());
    let db = Database::connect(&DbSettings::new(url.clone().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Another process (its own pool) holds the write lock for 6.5 s, past
    // the 5 s busy timeout.
    let other = sea_orm::Database::connect(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    other
        .execute_unprepared("CREATE TABLE IF NOT EXISTS held (n integer)")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let holder = tokio::spawn(async move {
        let tx = other
            .begin_with_options(sea_orm::TransactionOptions {
                isolation_level: None,
                access_mode: None,
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tx.execute_unprepared("INSERT INTO held VALUES (1)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(6500)).await;
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    db.migrate().await.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(started.elapsed() > Duration::from_secs(5), "it waited");
    assert!(
        db.pending_migrations()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    holder.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_waits_past_the_statement_timeout_for_the_lock() {
    let Some(pg) = carapace_testkit::postgres_fresh("migration_lock_wait", false).await else {
        return;
    };
    // Whoever holds the advisory lock (another process migrating).
    let other = sea_orm::Database::connect(pg.owner_url.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tx = other.begin().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(1633906018, 0)",
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut settings = pg.owner_settings();
    settings.statement_timeout = Duration::from_secs(1);
    let db = Database::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let migrating = tokio::spawn({
        let db = db.clone();
        async move {
            let started = Instant::now();
            let done = db.migrate().await;
            (done, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!migrating.is_finished(), "it waits for the lock");
    assert!(
        db.pending_migrations()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .len()
            > 1,
        "nothing applied meanwhile"
    );
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let (done, took) = migrating.await.unwrap_or_else(|e| panic!("{e}"));
    done.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(took > Duration::from_millis(2500));
    assert!(
        db.pending_migrations()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    db.close().await;
    let _ = other.close().await;
}
