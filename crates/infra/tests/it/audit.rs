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

mod chain;
mod export;
mod tamper;

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
    // A database of its own: TRUNCATE queues for an exclusive lock that
    // would stall every other test's audit writes and chainer in a shared
    // one (and wait for a test holding a transaction open on purpose).
    let Some(pg) = carapace_testkit::postgres_fresh("audit_tables_are_append_only", true).await
    else {
        return;
    };
    let pg = &pg;
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

/// The kind filter matches an action's verb exactly: `_` in a verb
/// (`access_log`) is that character, not LIKE's any-character, so an
/// action whose verb only looks alike is not counted as a read, and an
/// execute filter does not drop it.
async fn the_kind_filter_reads_underscores_as_underscores(db: Database) {
    use carapace_audit::ActionKind;

    let log = SeaAuditLog::new(db.clone());
    let ctx = new_org(&db).await;
    let reader = Access::system(ctx.clone());
    for action in ["patient.access_log", "patient.accessXlog", "patient.read"] {
        let event = reader.event(action, "patient", None, Outcome::Allowed);
        log.record(&event).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let of = |kind| {
        let (log, reader) = (&log, &reader);
        async move {
            let page = log
                .query(
                    reader,
                    &AuditQuery {
                        kind: Some(kind),
                        limit: 100,
                        ..AuditQuery::default()
                    },
                    reader.event("audit.read", "audit_log", None, Outcome::Allowed),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut actions: Vec<String> = page
                .items
                .into_iter()
                .map(|e| e.action)
                .filter(|a| a.starts_with("patient."))
                .collect();
            actions.sort();
            actions
        }
    };
    assert_eq!(
        of(ActionKind::Read).await,
        ["patient.access_log", "patient.read"]
    );
    assert_eq!(of(ActionKind::Execute).await, ["patient.accessXlog"]);
}

#[tokio::test]
async fn sqlite_the_kind_filter_reads_underscores_as_underscores() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    the_kind_filter_reads_underscores_as_underscores(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_the_kind_filter_reads_underscores_as_underscores() {
    let Some(pg) = carapace_testkit::postgres("postgres_kind_filter_underscores").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    the_kind_filter_reads_underscores_as_underscores(db).await;
}
