//! The audit trail in storage: every PHI call leaves exactly its events in
//! the same transaction (or fails), the tables are append-only, concurrent
//! writers leave one gapless chain, and `verify_org` names each kind of
//! tampering at its position.

use std::time::Duration;

use carapace_audit::chain::Problem;
use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::patient::{PatientPatch, PatientQuery, PatientRepository as _, Visibility};
use carapace_infra::audit::{AuditChainer, AuditQuery, SeaAuditLog, verify_org};
use carapace_infra::{Database, SeaPatients};
use carapace_phi_crypto::Phi;
use carapace_tenancy::{SubjectId, TenantContext};
use ed25519_dalek::SigningKey;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, TransactionTrait as _};

use crate::support::{acc, demographics, keys, new_org, sqlite};

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn chainer(db: &Database) -> AuditChainer {
    AuditChainer::new(db.clone(), signing_key(), Duration::ZERO)
}

/// Every event of `ctx`'s organization, oldest first.
async fn events(db: &Database, ctx: &TenantContext) -> Vec<AuditEvent> {
    let log = SeaAuditLog::new(db.clone());
    let reader = Access::system(ctx.clone());
    let mut all: Vec<AuditEvent> = Vec::new();
    let mut after = None;
    loop {
        let page = log
            .query(
                &reader,
                &AuditQuery {
                    after,
                    limit: 500,
                    ..AuditQuery::default()
                },
                reader.event("audit.read", "audit_log", None, Outcome::Allowed),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        all.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    all.retain(|e| e.action != "audit.read");
    all
}

fn summary(events: &[AuditEvent]) -> Vec<(String, Outcome, Option<String>)> {
    events
        .iter()
        .map(|e| (e.action.clone(), e.outcome, e.resource_id.clone()))
        .collect()
}

async fn every_phi_call_records_exactly_its_events(db: Database) {
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let who = acc(&ctx);
    let p = repo
        .create(&who, &demographics("Ann", Some("M-7")), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let q = repo
        .create(&who, &demographics("Bob", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let missing = carapace_clinical::patient::PatientId::generate();
    let id = |p: carapace_clinical::patient::PatientId| Some(p.as_uuid().to_string());
    let all = PatientQuery {
        visibility: Visibility::Organization,
        ..PatientQuery::default()
    };
    let search = PatientQuery {
        member_id: Some(Phi::new("M-7".to_owned())),
        ..all.clone()
    };
    let no_match = PatientQuery {
        member_id: Some(Phi::new("nobody".to_owned())),
        ..all.clone()
    };
    let patch = PatientPatch {
        phone: Some(Some(Phi::new("+1 555 0100".to_owned()))),
        ..PatientPatch::default()
    };

    // Each call, then exactly the events it must have left.
    type Expected = Vec<(&'static str, Outcome, Option<String>)>;
    let mut checked = 0;
    let mut seen = events(&db, &ctx).await.len();
    assert_eq!(seen, 2, "two creates, two events");
    let mut check = |name: &'static str, expected: Expected, now: Vec<AuditEvent>| {
        let fresh = summary(&now[seen..]);
        let expected: Vec<(String, Outcome, Option<String>)> = expected
            .into_iter()
            .map(|(a, o, r)| (a.to_owned(), o, r))
            .collect();
        assert_eq!(fresh, expected, "{name}");
        seen = now.len();
        checked += 1;
    };

    let _ = repo.get(&who, p.id).await;
    check(
        "read",
        vec![("patient.read", Outcome::Allowed, id(p.id))],
        events(&db, &ctx).await,
    );
    let _ = repo.get(&who, missing).await;
    check(
        "read missing",
        vec![("patient.read", Outcome::NotFound, id(missing))],
        events(&db, &ctx).await,
    );
    let _ = repo.update(&who, q.id, &patch, None).await;
    check(
        "update",
        vec![("patient.update", Outcome::Allowed, id(q.id))],
        events(&db, &ctx).await,
    );
    let (first, second) = if p.id.as_uuid() < q.id.as_uuid() {
        (p.id, q.id)
    } else {
        (q.id, p.id)
    };
    let _ = repo.list(&who, &all).await;
    check(
        "list shows two: one event each",
        vec![
            ("patient.list", Outcome::Allowed, id(first)),
            ("patient.list", Outcome::Allowed, id(second)),
        ],
        events(&db, &ctx).await,
    );
    let _ = repo.list(&who, &search).await;
    check(
        "search",
        vec![("patient.search", Outcome::Allowed, id(p.id))],
        events(&db, &ctx).await,
    );
    let _ = repo.list(&who, &no_match).await;
    check(
        "search without a match",
        vec![("patient.search", Outcome::NotFound, None)],
        events(&db, &ctx).await,
    );
    let _ = repo.delete(&who, q.id).await;
    check(
        "delete",
        vec![("patient.delete", Outcome::Allowed, id(q.id))],
        events(&db, &ctx).await,
    );
    assert_eq!(checked, 7);

    let all_events = events(&db, &ctx).await;
    let update = all_events
        .iter()
        .find(|e| e.action == "patient.update")
        .unwrap_or_else(|| panic!("update event"));
    assert_eq!(
        update.phi_fields,
        vec!["phone"],
        "names the fields, not values"
    );
    let text = serde_json::to_string(&all_events).unwrap_or_default();
    for value in ["Ann", "Bob", "M-7", "555 0100"] {
        assert!(!text.contains(value), "{value} is PHI and not in events");
    }
    assert!(
        all_events.iter().all(|e| e.actor.as_str() == "tester"),
        "attributed to the acting subject"
    );
}

#[tokio::test]
async fn sqlite_every_phi_call_records_exactly_its_events() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    every_phi_call_records_exactly_its_events(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_every_phi_call_records_exactly_its_events() {
    let Some(pg) = carapace_testkit::postgres("postgres_every_phi_call_records_events").await
    else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    every_phi_call_records_exactly_its_events(db).await;
}

#[tokio::test]
async fn an_unwritable_audit_log_fails_the_phi_call_and_returns_nothing() {
    let Some(pg) = carapace_testkit::postgres_fresh("unwritable_audit_log", true).await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    carapace_testkit::exec_as_owner(
        &pg,
        &format!(
            "REVOKE INSERT ON audit_events FROM {}",
            carapace_testkit::APP_ROLE
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let read = repo.get(&acc(&ctx), p.id).await;
    assert!(
        matches!(&read, Err(e) if e.code() == "storage_unavailable"),
        "no event, no PHI: {read:?}"
    );
    let listed = repo
        .list(
            &acc(&ctx),
            &PatientQuery {
                visibility: Visibility::Organization,
                ..PatientQuery::default()
            },
        )
        .await;
    assert!(listed.is_err());
    assert!(
        repo.create(&acc(&ctx), &demographics("Cy", None), None)
            .await
            .is_err()
    );
    carapace_testkit::exec_as_owner(
        &pg,
        &format!(
            "GRANT INSERT ON audit_events TO {}",
            carapace_testkit::APP_ROLE
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let page = repo
        .list(
            &acc(&ctx),
            &PatientQuery {
                visibility: Visibility::Organization,
                ..PatientQuery::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.items.len(), 1, "the failed create wrote no patient");
}

#[tokio::test]
async fn sqlite_audit_failure_fails_the_call_too() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    raw.execute_unprepared(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(repo.get(&acc(&ctx), p.id).await.is_err());
}

#[tokio::test]
async fn audit_tables_refuse_update_delete_and_truncate() {
    let Some(pg) = carapace_testkit::postgres("audit_tables_are_append_only").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = new_org(&db).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    repo.create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let org = ctx.org();
    let as_app = sea_orm::Database::connect(pg.app_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for table in ["audit_events", "audit_chain", "audit_checkpoints"] {
        for sql in [
            format!("UPDATE {table} SET org_id = org_id"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            // One simple query: one implicit transaction on one connection.
            let scoped = format!("SELECT set_config('app.org_id', '{org}', false); {sql};");
            let refused = as_app.execute_unprepared(&scoped).await;
            assert!(refused.is_err(), "server role: {sql} must be refused");
            let owner = carapace_testkit::exec_as_owner(pg, &sql).await;
            assert!(
                owner.is_err_and(|e| format!("{e:#}").contains("append-only")),
                "owner: {sql} must be refused by the trigger"
            );
        }
    }
    let still = events(&db, &ctx).await;
    assert_eq!(still.len(), 1, "nothing was changed or removed");
}

#[tokio::test]
async fn sqlite_audit_tables_refuse_update_and_delete() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let ctx = new_org(&db).await;
    SeaPatients::new(db.clone(), keys(&db))
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for table in ["audit_events", "audit_chain", "audit_checkpoints"] {
        for sql in [
            format!("UPDATE {table} SET org_id = org_id"),
            format!("DELETE FROM {table}"),
        ] {
            let refused = raw.execute_unprepared(&sql).await;
            assert!(
                refused.is_err_and(|e| e.to_string().contains("append-only")),
                "{sql} must be refused"
            );
        }
    }
}

#[tokio::test]
async fn a_hundred_concurrent_writers_leave_one_gapless_chain() {
    let Some(pg) = carapace_testkit::postgres("hundred_concurrent_audit_writers").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 100 writers reading the patient at once, while three chainers race.
    let mut writers = Vec::new();
    for i in 0..100 {
        let (repo, ctx) = (repo.clone(), ctx.clone());
        writers.push(tokio::spawn(async move {
            let who = Access::system(TenantContext::new(
                ctx.org(),
                SubjectId::parse(&format!("reader-{i}")).unwrap_or_else(|e| panic!("{e}")),
            ));
            repo.get(&who, p.id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        }));
    }
    let chainers: Vec<_> = (0..3)
        .map(|_| {
            let (db, org) = (db.clone(), ctx.org());
            tokio::spawn(async move {
                let c = chainer(&db);
                for _ in 0..20 {
                    c.chain_org(org).await.unwrap_or_else(|e| panic!("{e}"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    for w in writers {
        assert!(w.await.unwrap_or_else(|e| panic!("{e}")));
    }
    for c in chainers {
        c.await.unwrap_or_else(|e| panic!("{e}"));
    }
    chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(chain.entries, 101, "create + 100 reads, each exactly once");
    assert_eq!(chain.head, 101, "positions 1..=101, no gap, no fork");
    assert!(chain.checkpoints >= 1);
}

#[tokio::test]
async fn concurrent_reads_of_many_orgs_share_commits_and_keep_to_their_tenant() {
    let Some(pg) = carapace_testkit::postgres("grouped_reads_across_orgs").await else {
        return;
    };
    // A small pool: two shared transactions at once, so the readers queue.
    let mut settings = pg.app_settings();
    settings.pool_max = 4;
    let db = Database::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let mut orgs = Vec::new();
    for name in ["Ada", "Bea", "Cai"] {
        let ctx = new_org(&db).await;
        let p = repo
            .create(&acc(&ctx), &demographics(name, None), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        orgs.push((ctx, p.id, name));
    }
    let mut readers = Vec::new();
    for i in 0..60 {
        let (ctx, id, name) = orgs[i % 3].clone();
        let foreign = orgs[(i + 1) % 3].1;
        let repo = repo.clone();
        readers.push(tokio::spawn(async move {
            let mine = repo
                .get(&acc(&ctx), id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("{name}'s patient is readable"));
            assert_eq!(mine.demographics.given_name.expose_phi().as_str(), name);
            // Another organization's patient, asked for in the same batch
            // of transactions, is not there.
            let theirs = repo
                .get(&acc(&ctx), foreign)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(theirs.is_none(), "another tenant's patient stays hidden");
        }));
    }
    for r in readers {
        r.await.unwrap_or_else(|e| panic!("{e}"));
    }
    for (ctx, id, _) in &orgs {
        let reads: Vec<_> = events(&db, ctx)
            .await
            .into_iter()
            .filter(|e| e.action == "patient.read")
            .collect();
        assert_eq!(reads.len(), 40, "each read recorded once, in its own org");
        let own = Some(id.as_uuid().to_string());
        let allowed = reads
            .iter()
            .filter(|e| e.outcome == Outcome::Allowed && e.resource_id == own)
            .count();
        let missed = reads
            .iter()
            .filter(|e| e.outcome == Outcome::NotFound && e.resource_id != own)
            .count();
        assert_eq!((allowed, missed), (20, 20));
        assert!(reads.iter().all(|e| e.org == ctx.org()));
    }
    // Rows written by one transaction share its id (xmin).
    let owner = sea_orm::Database::connect(pg.owner_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = orgs
        .iter()
        .map(|(c, _, _)| format!("'{}'", c.org()))
        .collect();
    let row = owner
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT count(DISTINCT xmin::text)::bigint AS n FROM audit_events \
                 WHERE action = 'patient.read' AND org_id IN ({})",
                ids.join(",")
            ),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a count"));
    let commits: i64 = row.try_get("", "n").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        commits < 120,
        "120 concurrent reads shared commits ({commits} transactions)"
    );
}

#[tokio::test]
async fn an_event_committed_after_a_chaining_pass_is_still_chained() {
    let Some(pg) = carapace_testkit::postgres("late_commit_still_chained").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A slow transaction writes its event and has not committed yet...
    let raw = sea_orm::Database::connect(pg.app_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let slow = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    slow.execute_raw(tenant_setting(&ctx))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let late = acc(&ctx).event("patient.read", "patient", None, Outcome::Allowed);
    carapace_infra::audit::append(&slow, std::slice::from_ref(&late))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // ...while events after it commit and a chaining pass runs.
    repo.get(&acc(&ctx), p.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, 2, "the committed create and read");
    slow.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let second = chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second, 1, "the late event joins the chain on the next pass");
    let third = chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(third, 0, "and only once");
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(chain.entries, 3);
}

/// `ctx`'s tenant, for this transaction only (what every repository sets).
fn tenant_setting(ctx: &TenantContext) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('app.org_id', $1, true)",
        [ctx.org().to_string().into()],
    )
}

/// Commits `n` events of `ctx`'s organization, 500 per transaction, on a
/// connection of its own (nothing chains them).
async fn commit_backlog(url: &str, ctx: &TenantContext, n: usize) {
    let writer = sea_orm::Database::connect(url.to_owned())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..n.div_ceil(500) {
        let tx = writer.begin().await.unwrap_or_else(|e| panic!("{e}"));
        tx.execute_raw(tenant_setting(ctx))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let batch: Vec<AuditEvent> = (0..500)
            .map(|_| acc(ctx).event("patient.list", "patient", None, Outcome::Allowed))
            .collect();
        carapace_infra::audit::append(&tx, &batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    }
    writer.close().await.unwrap_or_else(|e| panic!("{e}"));
}

/// A pass that chains a full batch and then fails (here: its checkpoint
/// cannot be written) rolls back, and the next passes start from where the
/// last *committed* pass stopped: nothing it had taken is skipped.
#[tokio::test]
async fn a_full_pass_that_rolls_back_leaves_nothing_behind() {
    let test = "backlog_pass_rolls_back";
    let Some(pg) = carapace_testkit::postgres_fresh(test, true).await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = new_org(&db).await;
    commit_backlog(&pg.app_url, &ctx, 4500).await;
    let app = carapace_testkit::APP_ROLE;
    carapace_testkit::exec_as_owner(
        &pg,
        &format!("REVOKE INSERT ON audit_checkpoints FROM {app}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let chainer = chainer(&db);
    assert!(chainer.chain_org(ctx.org()).await.is_err());
    carapace_testkit::exec_as_owner(&pg, &format!("GRANT INSERT ON audit_checkpoints TO {app}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let drained = chainer
        .chain_org_to_completion(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(drained, 4500);
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    assert_eq!(verified.chain.map(|c| c.entries).ok(), Some(4500));
}

/// A backlog of more than two batches drains pass by pass from where the
/// last pass stopped (not from the horizon each time), and still chains an
/// event older than the whole backlog whose transaction commits only after
/// the first pass: exactly once, with nothing left behind.
#[tokio::test]
async fn a_backlog_drains_from_where_it_stopped_and_still_takes_late_commits() {
    let Some(pg) = carapace_testkit::postgres("backlog_drains_with_late_commit").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = new_org(&db).await;
    let raw = sea_orm::Database::connect(pg.app_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The oldest event of all, in a transaction that stays open...
    let slow = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    slow.execute_raw(tenant_setting(&ctx))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let late = acc(&ctx).event("patient.read", "patient", None, Outcome::Allowed);
    carapace_infra::audit::append(&slow, std::slice::from_ref(&late))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // ...while a backlog of 4,500 newer events commits.
    commit_backlog(&pg.app_url, &ctx, 4500).await;
    let chainer = chainer(&db);
    let first = chainer
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first, 2000,
        "a full batch; the late event is not visible yet"
    );
    slow.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let mut passes = vec![first];
    loop {
        let added = chainer
            .chain_org(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        passes.push(added);
        if added == 0 {
            break;
        }
        assert!(passes.len() < 10, "{passes:?}");
    }
    assert_eq!(passes.iter().sum::<u64>(), 4501, "{passes:?}");
    // A chainer that never saw the backlog (another server's) agrees.
    assert_eq!(
        crate::audit::chainer(&db)
            .chain_org(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        0
    );
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(chain.entries, 4501);
    // The late event is in the chain, once.
    let look = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    look.execute_raw(tenant_setting(&ctx))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let found = look
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM audit_chain WHERE event_id = $1",
            [late.id.into()],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .and_then(|r| r.try_get::<i64>("", "n").ok());
    look.commit().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found, Some(1));
}

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

async fn export_and_purge(db: Database, owner: Database) {
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..9 {
        repo.get(&acc(&ctx), p.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let all = events(&db, &ctx).await;
    assert_eq!(all.len(), 10);
    let key = signing_key();
    let org = ctx.org();
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let (full, full_file) = carapace_infra::audit::export_org(&db, org, epoch, later, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            full.body.first_position,
            full.body.last_position,
            full.body.count
        ),
        (1, 10, 10)
    );
    assert_eq!(
        carapace_audit::export::verify_export(&full, full_file.as_slice(), &key.verifying_key()),
        Ok(10)
    );

    // Only positions 1..=3 exported: only they may go, even if older ones exist.
    let (first3, first3_file) = carapace_infra::audit::export_org(&db, org, epoch, all[3].at, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first3.body.count, 3);
    // A later stretch does not cover the chain's start: refused.
    let (tail, tail_file) = carapace_infra::audit::export_org(&db, org, all[5].at, later, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        carapace_infra::audit::purge_org(&owner, org, later, &tail, &tail_file, &key)
            .await
            .is_err()
    );
    // A doctored export is refused.
    let doctored = String::from_utf8_lossy(&first3_file).replacen("allowed", "denied", 1);
    assert!(
        carapace_infra::audit::purge_org(&owner, org, later, &first3, doctored.as_bytes(), &key)
            .await
            .is_err()
    );
    // Nothing is past retention yet: nothing goes.
    let none = carapace_infra::audit::purge_org(&owner, org, epoch, &full, &full_file, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(none.to < none.from);

    let done = carapace_infra::audit::purge_org(&owner, org, later, &first3, &first3_file, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.from, done.to), (1, 3), "only what the export holds");
    // Retention cutoff at event 6: of the rest, only 4..=5 are past it.
    let done = carapace_infra::audit::purge_org(&owner, org, all[5].at, &full, &full_file, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (done.from, done.to),
        (4, 5),
        "a whole prefix, only past retention"
    );

    chainer(&db)
        .chain_org(org)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_org(&db, org, &key.verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        (chain.entries, chain.head),
        (8, 13),
        "positions 6..=10, the trail read and the two purges verify from the tombstone"
    );
    let left = events(&db, &ctx).await;
    assert_eq!(
        left.iter().filter(|e| e.action == "audit.purge").count(),
        2,
        "each purge is itself recorded"
    );
    assert_eq!(left.len(), 5 + 2);

    // Everything past retention goes; the chain carries on from the tombstone.
    let (rest, rest_file) = carapace_infra::audit::export_org(&db, org, epoch, later, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gone = carapace_infra::audit::purge_org(&owner, org, later, &rest, &rest_file, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gone.from, 6);
    repo.get(&acc(&ctx), p.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    chainer(&db)
        .chain_org(org)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_org(&db, org, &key.verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        chain.head,
        gone.to + chain.entries,
        "positions continue after the tombstone"
    );
    assert!(chain.entries >= 2, "the purge event and the new read");
}

#[tokio::test]
async fn sqlite_export_then_purge_past_retention_keeps_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    export_and_purge(db.clone(), db).await;
}

#[tokio::test]
async fn postgres_export_then_purge_past_retention_keeps_a_verifiable_chain() {
    let Some(pg) = carapace_testkit::postgres("export_then_purge").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = Database::connect(&pg.owner_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    export_and_purge(db, owner).await;
}
