//! The monthly partitions of `audit_events` on PostgreSQL (migration m0027,
//! ADR 0008 "Partitions"): they exist after migrating, an event lands in
//! its month, the app role can still only append (and cannot reach a
//! partition by name), row-level security holds across months, the
//! maintenance function is idempotent, time-bounded queries read only
//! their months through an index, and retention still verifies, dropping
//! a month only once every organization's purge emptied it.

use std::time::Duration;

use carapace_audit::Outcome;
use carapace_infra::Database;
use carapace_infra::audit::{AuditChainer, SeaAuditLog, export_org, purge_org, verify_org};
use carapace_infra::audit_partitions::{
    MonthPartition, add_partitions, drop_empty_before, partitions,
};
use carapace_tenancy::TenantContext;
use carapace_testkit::PgTestDb;
use ed25519_dalek::SigningKey;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
use time::{Date, OffsetDateTime, Time};

use crate::support::{acc, new_org, one_connection};

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[27; 32])
}

/// The first instant (UTC) of the month `back` months before the current
/// one (negative: ahead).
fn month_start(back: i32) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let months = now.year() * 12 + i32::from(u8::from(now.month())) - 1 - back;
    let month = u8::try_from(months.rem_euclid(12) + 1).unwrap_or_else(|e| panic!("{e}"));
    Date::from_calendar_date(
        months.div_euclid(12),
        time::Month::try_from(month).unwrap_or_else(|e| panic!("{e}")),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .with_time(Time::MIDNIGHT)
    .assume_utc()
}

/// The partition name of the month starting at `start`.
fn name_of(start: OffsetDateTime) -> String {
    format!(
        "audit_events_p{:04}{:02}",
        start.year(),
        u8::from(start.month())
    )
}

async fn fresh(test: &str) -> Option<(PgTestDb, Database, Database)> {
    let pg = carapace_testkit::postgres_fresh(test, true).await?;
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = Database::connect(&pg.owner_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Some((pg, db, owner))
}

async fn owner_exec(pg: &PgTestDb, sql: &str) {
    carapace_testkit::exec_as_owner(pg, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:#}"));
}

async fn owner_text(pg: &PgTestDb, sql: &str) -> Vec<String> {
    let conn = sea_orm::Database::connect(pg.owner_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = conn
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.unwrap_or_else(|e| panic!("{e}"));
    rows.iter()
        .map(|r| {
            r.try_get::<String>("", "v")
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// Records one event of `ctx`'s organization at `at`; returns its id.
async fn record_at(db: &Database, ctx: &TenantContext, at: OffsetDateTime) -> uuid::Uuid {
    let mut event = acc(ctx).event(
        "patient.read",
        "patient",
        Some("p-1".into()),
        Outcome::Allowed,
    );
    // Stored to the microsecond, like every event's time.
    event.at = at
        .replace_nanosecond(at.nanosecond() / 1000 * 1000)
        .unwrap_or_else(|e| panic!("{e}"));
    SeaAuditLog::new(db.clone())
        .record(&event)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    event.id
}

async fn partition_of(pg: &PgTestDb, id: uuid::Uuid) -> String {
    owner_text(
        pg,
        &format!("SELECT tableoid::regclass::text AS v FROM audit_events WHERE id = '{id}'"),
    )
    .await
    .pop()
    .unwrap_or_else(|| panic!("event {id} not found"))
}

#[tokio::test]
async fn postgres_events_land_in_their_months_partition() {
    let Some((pg, db, _owner)) = fresh("partitions_exist").await else {
        return;
    };
    let kind = owner_text(
        &pg,
        "SELECT relkind::text AS v FROM pg_class WHERE relname = 'audit_events'",
    )
    .await;
    assert_eq!(kind, ["p"], "audit_events is partitioned");
    let months: Vec<String> = partitions(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|p| p.name)
        .collect();
    for ahead in 0..=3 {
        let name = name_of(month_start(-ahead));
        assert!(months.contains(&name), "{name} exists: {months:?}");
    }
    let default = owner_text(
        &pg,
        "SELECT c.relname::text AS v FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'audit_events'::regclass AND c.relname = 'audit_events_default'",
    )
    .await;
    assert_eq!(default.len(), 1, "a default partition");

    let ctx = new_org(&db).await;
    let now = record_at(&db, &ctx, OffsetDateTime::now_utc()).await;
    assert_eq!(partition_of(&pg, now).await, name_of(month_start(0)));
    let ancient = record_at(&db, &ctx, month_start(0) - time::Duration::days(365 * 20)).await;
    assert_eq!(partition_of(&pg, ancient).await, "audit_events_default");
    // The owner adds an older month: a later event of that month lands there.
    owner_exec(
        &pg,
        &format!("SELECT audit_events_add_month('{}')", month_start(2).date()),
    )
    .await;
    let older = record_at(&db, &ctx, month_start(2) + time::Duration::hours(5)).await;
    assert_eq!(partition_of(&pg, older).await, name_of(month_start(2)));
    let chainer = AuditChainer::new(db.clone(), signing_key(), Duration::ZERO);
    chainer
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let v = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(v.chain.is_ok(), "{:?}", v.chain);
    assert_eq!(v.pending, 0);
}

#[tokio::test]
async fn postgres_partition_maintenance_is_idempotent_and_only_for_months_ahead() {
    let Some((pg, db, _owner)) = fresh("partitions_maintenance").await else {
        return;
    };
    // The furthest month ahead is missing (as three months after migrating).
    let last = partitions(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .unwrap_or_else(|| panic!("no partition"));
    owner_exec(&pg, &format!("DROP TABLE {}", last.name)).await;
    assert_eq!(
        add_partitions(&db).await.unwrap_or_else(|e| panic!("{e}")),
        1
    );
    assert_eq!(
        add_partitions(&db).await.unwrap_or_else(|e| panic!("{e}")),
        0
    );
    assert_eq!(
        add_partitions(&db).await.unwrap_or_else(|e| panic!("{e}")),
        0
    );
    let after = partitions(&db).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.last(), Some(&last), "recreated under the same rule");
    let recreated = owner_text(
        &pg,
        &format!(
            "SELECT (c.relforcerowsecurity AND EXISTS (SELECT 1 FROM pg_trigger t
                     WHERE t.tgrelid = c.oid AND t.tgname = '{0}_no_truncate'))::text AS v
             FROM pg_class c WHERE c.relname = '{0}'",
            last.name
        ),
    )
    .await;
    assert_eq!(recreated, ["true"], "guarded like the others");
    // Concurrent callers: one creates, the others find it there.
    owner_exec(&pg, &format!("DROP TABLE {}", last.name)).await;
    let runs = futures_join(&db).await;
    assert_eq!(runs, 1, "created once among concurrent callers");

    // The app role can do nothing else: no month of its choosing, no DDL.
    let (app, _) = one_connection(&pg.app_url).await;
    for sql in [
        "SELECT audit_events_add_month('2001-01-01')".to_owned(),
        "SELECT audit_events_guard_partition('audit_events_default')".to_owned(),
        "CREATE TABLE audit_events_p200101 PARTITION OF audit_events
           FOR VALUES FROM ('2001-01-01') TO ('2001-02-01')"
            .to_owned(),
        format!("ALTER TABLE audit_events DETACH PARTITION {}", last.name),
        format!("DROP TABLE {}", last.name),
    ] {
        assert!(
            app.execute_unprepared(&sql).await.is_err(),
            "the app role: {sql} refused"
        );
    }
}

async fn futures_join(db: &Database) -> u64 {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { add_partitions(&db).await })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    total
}

#[tokio::test]
async fn postgres_partitions_stay_append_only_and_out_of_the_app_roles_reach() {
    let Some((pg, db, _owner)) = fresh("partitions_append_only").await else {
        return;
    };
    let ctx = new_org(&db).await;
    let id = record_at(&db, &ctx, OffsetDateTime::now_utc()).await;
    let part = partition_of(&pg, id).await;
    let ancient = record_at(&db, &ctx, month_start(0) - time::Duration::days(365 * 20)).await;
    assert_eq!(partition_of(&pg, ancient).await, "audit_events_default");
    let org = ctx.org();
    let (app, _) = one_connection(&pg.app_url).await;
    app.execute_unprepared(&format!("SELECT set_config('app.org_id', '{org}', false)"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for table in ["audit_events", part.as_str(), "audit_events_default"] {
        for sql in [
            format!("UPDATE {table} SET actor = 'system:purge'"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            assert!(
                app.execute_unprepared(&sql).await.is_err(),
                "the app role: {sql} refused"
            );
        }
    }
    // By name, a partition is not even readable by the app role.
    assert!(
        app.execute_unprepared(&format!("SELECT * FROM {part}"))
            .await
            .is_err()
    );
    // The owner meets the append-only triggers on every partition.
    for table in [part.as_str(), "audit_events_default"] {
        for sql in [
            format!("UPDATE {table} SET actor = 'system:purge'"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let refused = carapace_testkit::exec_as_owner(&pg, &sql).await;
            assert!(
                refused.is_err_and(|e| format!("{e:#}").contains("append-only")),
                "owner: {sql} refused by the trigger"
            );
        }
    }
    assert_eq!(partition_of(&pg, id).await, part, "still there");
}

#[tokio::test]
async fn postgres_row_level_security_isolates_tenants_across_partitions() {
    let Some((pg, db, _owner)) = fresh("partitions_rls").await else {
        return;
    };
    for back in 1..=2 {
        owner_exec(
            &pg,
            &format!(
                "SELECT audit_events_add_month('{}')",
                month_start(back).date()
            ),
        )
        .await;
    }
    let a = new_org(&db).await;
    let b = new_org(&db).await;
    let mut placed = std::collections::BTreeSet::new();
    for ctx in [&a, &b] {
        for back in 0..=2 {
            let id = record_at(&db, ctx, month_start(back) + time::Duration::hours(1)).await;
            placed.insert(partition_of(&pg, id).await);
        }
        let id = record_at(&db, ctx, month_start(0) - time::Duration::days(365 * 30)).await;
        placed.insert(partition_of(&pg, id).await);
    }
    assert_eq!(placed.len(), 4, "three months and the default: {placed:?}");
    let (app, _) = one_connection(&pg.app_url).await;
    for (me, other) in [(&a, &b), (&b, &a)] {
        app.execute_unprepared(&format!(
            "SELECT set_config('app.org_id', '{}', false)",
            me.org()
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let rows = app
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT org_id::text AS v FROM audit_events",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let orgs: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String>("", "v").ok())
            .collect();
        assert_eq!(orgs.len(), 4, "its four events, in four partitions");
        assert!(orgs.iter().all(|o| *o == me.org().to_string()));
        // Writing another tenant's event into any month is refused.
        for back in 0..=2 {
            let at = month_start(back) + time::Duration::hours(2);
            let sql = format!(
                "INSERT INTO audit_events (org_id, id, recorded_at, actor, action, resource_type, outcome, body)
                 VALUES ('{}', gen_random_uuid(), '{}', 'x', 'y', 'z', 'allowed', '{{}}')",
                other.org(),
                at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|e| panic!("{e}"))
            );
            assert!(app.execute_unprepared(&sql).await.is_err(), "{sql}");
        }
    }
}

/// The SQL `SeaAuditLog::query` sends for these filters (SeaORM's form,
/// with the values inlined for EXPLAIN).
fn search_sql(org: &str, filters: &str) -> String {
    format!(
        "SELECT org_id, id, recorded_at, actor, action, resource_type, resource_id, outcome, body
         FROM audit_events WHERE org_id = '{org}' {filters} ORDER BY id ASC LIMIT 51"
    )
}

async fn explain(app: &sea_orm::DatabaseConnection, sql: &str) -> String {
    app.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        format!("EXPLAIN {sql}"),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .iter()
    .map(|r| r.try_get::<String>("", "QUERY PLAN").unwrap_or_default())
    .collect::<Vec<_>>()
    .join("\n")
}

/// The partitions a plan reads (their tables or their indexes).
fn partitions_in(plan: &str) -> std::collections::BTreeSet<String> {
    plan.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|w| {
            if w.starts_with("audit_events_default") {
                return Some("audit_events_default".to_owned());
            }
            let month = w.strip_prefix("audit_events_p")?.get(..6)?;
            month
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| format!("audit_events_p{month}"))
        })
        .collect()
}

#[tokio::test]
async fn postgres_time_bounded_audit_queries_prune_partitions_and_use_indexes() {
    let Some((pg, _db, _owner)) = fresh("partitions_explain").await else {
        return;
    };
    // Six months of 5 organizations' events (10,000 a month), as the owner.
    owner_exec(
        &pg,
        "SELECT audit_events_add_month((date_trunc('month', now() AT TIME ZONE 'UTC')
                                        - make_interval(months => k))::date)
         FROM generate_series(1, 5) k;
         INSERT INTO audit_events (org_id, id, recorded_at, actor, action, resource_type,
                                   resource_id, outcome, body)
         SELECT ('00000000-0000-0000-0000-00000000000' || (i % 5))::uuid, gen_random_uuid(),
                (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
                  - make_interval(months => i % 6) + make_interval(secs => i),
                'user:' || (i % 50), 'patient.read', 'patient', 'p-' || (i % 500),
                'allowed', '{}'
         FROM generate_series(1, 60000) i;
         ANALYZE audit_events;",
    )
    .await;
    let org = "00000000-0000-0000-0000-000000000003";
    let (app, _) = one_connection(&pg.app_url).await;
    app.execute_unprepared(&format!("SELECT set_config('app.org_id', '{org}', false)"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (from, to) = (rfc(month_start(2)), rfc(month_start(1)));
    let month = name_of(month_start(2));
    let bounded = format!("AND recorded_at >= '{from}' AND recorded_at < '{to}'");
    for (what, filters) in [
        (
            "the filtered audit search (actor, one month)",
            format!("AND actor = 'user:13' {bounded}"),
        ),
        (
            "the per-patient access log (one month)",
            format!("AND resource_type = 'patient' AND resource_id = 'p-13' {bounded}"),
        ),
    ] {
        let plan = explain(&app, &search_sql(org, &filters)).await;
        assert_eq!(
            partitions_in(&plan),
            std::collections::BTreeSet::from([month.clone()]),
            "{what}: only its month is read\n{plan}"
        );
        assert!(plan.contains("Index"), "{what}: through an index\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{what}: no scan\n{plan}");
    }
    // The whole access log (no time bound) reads every month, each through
    // its index: the cost is the patient's history, not the table's.
    let plan = explain(
        &app,
        &search_sql(
            org,
            "AND resource_type = 'patient' AND resource_id = 'p-13'",
        ),
    )
    .await;
    let filled: Vec<String> = (0..6).map(|back| name_of(month_start(back))).collect();
    let read = partitions_in(&plan);
    assert!(filled.iter().all(|m| read.contains(m)), "{plan}");
    // (The planner may scan an empty partition, the months ahead and the
    // default one here, rather than open its index.)
    for line in plan.lines().filter(|l| l.contains("Seq Scan")) {
        assert!(
            partitions_in(line).is_disjoint(&filled.iter().cloned().collect()),
            "a filled month is scanned: {line}\n{plan}"
        );
    }
    // Bound as parameters (what the server sends) and planned generically,
    // pruning happens when the statement runs.
    app.execute_unprepared(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE bounded(uuid, text, timestamptz, timestamptz) AS
           SELECT id FROM audit_events WHERE org_id = $1 AND actor = $2
             AND recorded_at >= $3 AND recorded_at < $4 ORDER BY id LIMIT 51",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let plan = explain(
        &app,
        &format!("EXECUTE bounded('{org}', 'user:13', '{from}', '{to}')"),
    )
    .await;
    assert!(plan.contains("Subplans Removed"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

#[tokio::test]
async fn postgres_retention_purges_row_wise_and_drops_a_month_once_empty() {
    let Some((pg, db, owner)) = fresh("partitions_retention").await else {
        return;
    };
    let old = month_start(3);
    owner_exec(
        &pg,
        &format!("SELECT audit_events_add_month('{}')", old.date()),
    )
    .await;
    let cutoff = month_start(2);
    let key = signing_key();
    let chainer = AuditChainer::new(db.clone(), key.clone(), Duration::ZERO);
    let orgs = [new_org(&db).await, new_org(&db).await];
    for ctx in &orgs {
        for h in 0..5 {
            record_at(&db, ctx, old + time::Duration::hours(h)).await;
        }
        for _ in 0..3 {
            record_at(&db, ctx, OffsetDateTime::now_utc()).await;
        }
        chainer
            .chain_org(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let old_month = MonthPartition {
        name: name_of(old),
        from: old,
        to: month_start(2),
    };
    assert!(
        partitions(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .contains(&old_month)
    );
    for (i, ctx) in orgs.iter().enumerate() {
        let org = ctx.org();
        let (manifest, file) = export_org(&db, org, OffsetDateTime::UNIX_EPOCH, cutoff, &key)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(manifest.body.count, 5);
        let purged = purge_org(
            &owner,
            org,
            cutoff,
            &manifest,
            std::io::Cursor::new(&file),
            &key,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((purged.from, purged.to), (1, 5));
        let v = verify_org(&db, org, &key.verifying_key())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(v.chain.is_ok(), "{:?}", v.chain);
        let dropped = drop_empty_before(&owner, cutoff)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if i == 0 {
            assert!(dropped.is_empty(), "the other organization's month stays");
        } else {
            assert_eq!(
                dropped,
                std::slice::from_ref(&old_month.name),
                "emptied: dropped"
            );
        }
    }
    let left = partitions(&db).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!left.contains(&old_month));
    assert!(left.iter().any(|p| p.name == name_of(month_start(0))));
    for ctx in &orgs {
        record_at(&db, ctx, OffsetDateTime::now_utc()).await;
        chainer
            .chain_org(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let v = verify_org(&db, ctx.org(), &key.verifying_key())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(v.chain.is_ok(), "{:?}", v.chain);
        assert_eq!(v.pending, 0);
    }
    // Nothing to drop the second time; the current months never go.
    assert!(
        drop_empty_before(&owner, OffsetDateTime::now_utc())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
}
