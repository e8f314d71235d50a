//! Local accounts and sessions on real databases: lockout, single-use
//! refresh tokens, reuse revoking the family, security events.

use carapace_auth::local::{
    AccountStore as _, Email, IssuedTokens, LocalAuth, LoginOutcome, Rotation, SessionLimits,
    SessionStore as _, hash_password,
};
use carapace_auth::{AuthError, Role, RoleSet};
use carapace_infra::Database;
use carapace_infra::accounts::{SeaAccounts, SeaSessions, events};
use carapace_infra::local_tokens::LocalTokens;
use carapace_tenancy::TenantContext;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use crate::support::{new_org, one_connection};

const PASSWORD: &str = "a sturdy passphrase for tests";

type Auth = LocalAuth<SeaAccounts, SeaSessions, LocalTokens>;

fn auth(db: &Database) -> Auth {
    let pem = LocalTokens::generate_pem().unwrap_or_else(|e| panic!("{e}"));
    LocalAuth {
        accounts: SeaAccounts::new(db.clone()),
        sessions: SeaSessions::new(db.clone()),
        tokens: LocalTokens::new(&pem, &[]).unwrap_or_else(|e| panic!("{e}")),
        limits: SessionLimits::default(),
        sealer: std::sync::Arc::new(carapace_phi_crypto::LocalSealer::new(&[9; 32])),
        events: std::sync::Arc::new(carapace_infra::audit::SeaAuditLog::new(db.clone())),
    }
}

/// The tokens of a login that needed no second factor.
fn signed_in(outcome: Result<LoginOutcome, AuthError>) -> IssuedTokens {
    match outcome {
        Ok(LoginOutcome::Tokens(t)) => t,
        other => panic!("expected tokens, got {other:?}"),
    }
}

async fn account(db: &Database, ctx: &TenantContext, email: &str) {
    let hash =
        hash_password(&SecretString::from(PASSWORD.to_owned())).unwrap_or_else(|e| panic!("{e}"));
    SeaAccounts::new(db.clone())
        .create(
            ctx,
            &Email::parse(email).unwrap_or_else(|| panic!("email")),
            Some(hash),
            RoleSet::of(&[Role::Clinician]),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn pw(v: &str) -> SecretString {
    SecretString::from(v.to_owned())
}

/// Security events of `kind` in `ctx`'s org, read through the raw pool
/// (inside a tenant transaction on PostgreSQL, as RLS requires).
async fn events_of(raw: &DatabaseConnection, ctx: &TenantContext, kind: &str) -> i64 {
    let backend = raw.get_database_backend();
    let tx = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    if backend == DbBackend::Postgres {
        tx.execute_unprepared(&format!("SET LOCAL app.org_id = '{}'", ctx.org()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT count(*) FROM security_events WHERE org_id = $1 AND kind = $2"
        }
        _ => "SELECT count(*) FROM security_events WHERE org_id = ? AND kind = ?",
    };
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [ctx.org().as_uuid().into(), kind.into()],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("row"));
    let n = row
        .try_get_by_index::<i64>(0)
        .unwrap_or_else(|e| panic!("{e}"));
    tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    n
}

async fn throttling(url: &str) {
    let (raw, db) = one_connection(url).await;
    let ctx = new_org(&db).await;
    account(&db, &ctx, "nurse@example.org").await;
    let auth = auth(&db);
    let now = OffsetDateTime::now_utc();
    let owner: std::net::IpAddr = "192.0.2.10".parse().unwrap_or_else(|e| panic!("{e}"));
    let stranger: std::net::IpAddr = "198.51.100.66".parse().unwrap_or_else(|e| panic!("{e}"));
    // The owner has signed in from their usual address before.
    signed_in(
        auth.login(
            ctx.org(),
            "nurse@example.org",
            &pw(PASSWORD),
            Some(owner),
            now,
        )
        .await,
    );
    for _ in 0..5 {
        let r = auth
            .login(
                ctx.org(),
                "nurse@example.org",
                &pw("wrong password!!"),
                Some(stranger),
                now,
            )
            .await;
        assert!(matches!(r, Err(AuthError::InvalidCredentials)));
    }
    let refused = auth
        .login(
            ctx.org(),
            "nurse@example.org",
            &pw(PASSWORD),
            Some(stranger),
            now,
        )
        .await;
    assert!(
        matches!(refused, Err(AuthError::InvalidCredentials)),
        "a stranger waits even with the right password"
    );
    assert_eq!(events_of(&raw, &ctx, events::ACCOUNT_LOCKED).await, 1);
    signed_in(
        auth.login(
            ctx.org(),
            "NURSE@example.org ",
            &pw(PASSWORD),
            Some(owner),
            now,
        )
        .await,
    );
    // The owner's success ended the streak: anyone may try again.
    signed_in(
        auth.login(
            ctx.org(),
            "nurse@example.org",
            &pw(PASSWORD),
            Some(stranger),
            now,
        )
        .await,
    );
    for _ in 0..5 {
        let _ = auth
            .login(
                ctx.org(),
                "nurse@example.org",
                &pw("wrong password!!"),
                None,
                now,
            )
            .await;
    }
    let later = now + time::Duration::minutes(1);
    signed_in(
        auth.login(ctx.org(), "nurse@example.org", &pw(PASSWORD), None, later)
            .await,
    );
    // Unknown user and unknown org answer exactly the same way.
    assert!(matches!(
        auth.login(ctx.org(), "nobody@example.org", &pw(PASSWORD), None, now)
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    let other = new_org(&db).await;
    assert!(matches!(
        auth.login(other.org(), "nurse@example.org", &pw(PASSWORD), None, now)
            .await,
        Err(AuthError::InvalidCredentials)
    ));
}

async fn refresh_family(url: &str) {
    let (raw, db) = one_connection(url).await;
    let ctx = new_org(&db).await;
    account(&db, &ctx, "doc@example.org").await;
    let auth = auth(&db);
    let now = OffsetDateTime::now_utc();
    let first = signed_in(
        auth.login(ctx.org(), "doc@example.org", &pw(PASSWORD), None, now)
            .await,
    );
    let p = auth
        .tokens
        .verify(first.access_token.expose_secret())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.org(), ctx.org());
    assert!(p.roles().contains(Role::Clinician));

    let second = auth
        .refresh(&first.refresh_token, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret()
    );
    assert_eq!(second.session, first.session);
    // Presented again at once (a second tab): the same successor.
    let again = auth
        .refresh(&first.refresh_token, now + time::Duration::seconds(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.refresh_token.expose_secret(),
        second.refresh_token.expose_secret()
    );
    assert_eq!(events_of(&raw, &ctx, events::REFRESH_REUSE).await, 0);
    // Replaying the spent token after the grace window revokes the family...
    assert!(matches!(
        auth.refresh(&first.refresh_token, now + time::Duration::seconds(11))
            .await,
        Err(AuthError::InvalidToken(_))
    ));
    assert_eq!(events_of(&raw, &ctx, events::REFRESH_REUSE).await, 1);
    // ...so the legitimate newest token is dead too.
    assert!(auth.refresh(&second.refresh_token, now).await.is_err());

    // Idle and absolute limits.
    let s = signed_in(
        auth.login(ctx.org(), "doc@example.org", &pw(PASSWORD), None, now)
            .await,
    );
    assert!(
        auth.refresh(&s.refresh_token, now + time::Duration::minutes(31))
            .await
            .is_err(),
        "idle timeout"
    );
    // Logout ends a session; logging out again is fine.
    let s = signed_in(
        auth.login(ctx.org(), "doc@example.org", &pw(PASSWORD), None, now)
            .await,
    );
    auth.logout(&s.refresh_token, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    auth.logout(&s.refresh_token, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(auth.refresh(&s.refresh_token, now).await.is_err());
}

async fn concurrent_rotation(url: &str) {
    let db = Database::connect(&carapace_infra::DbSettings::new(url.to_owned().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = new_org(&db).await;
    account(&db, &ctx, "race@example.org").await;
    let auth = auth(&db);
    let now = OffsetDateTime::now_utc();
    let s = signed_in(
        auth.login(ctx.org(), "race@example.org", &pw(PASSWORD), None, now)
            .await,
    );
    let (_, hash) = carapace_auth::local::RefreshToken::parse(&s.refresh_token)
        .unwrap_or_else(|| panic!("shape"));
    let sessions = SeaSessions::new(db.clone());
    let (a, b) = tokio::join!(
        sessions.rotate(&ctx, hash, [1; 32], vec![1], now, SessionLimits::default()),
        sessions.rotate(&ctx, hash, [2; 32], vec![2], now, SessionLimits::default()),
    );
    let rotated = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(Rotation::Rotated { .. })))
        .count();
    assert_eq!(rotated, 1, "{a:?} {b:?}");
    // The loser (inside the grace window) gets the winner's successor,
    // never a second family member of its own.
    let repeated: Vec<&Vec<u8>> = [&a, &b]
        .into_iter()
        .filter_map(|r| match r {
            Ok(Rotation::Repeated {
                sealed_successor, ..
            }) => Some(sealed_successor),
            _ => None,
        })
        .collect();
    assert_eq!(repeated.len(), 1, "{a:?} {b:?}");
    assert!(repeated[0] == &vec![1] || repeated[0] == &vec![2]);
}

#[tokio::test]
async fn sqlite_five_failures_throttle_strangers_but_not_the_owner() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = crate::support::sqlite(&dir).await;
    db.close().await;
    throttling(&format!("sqlite://{}/carapace.db", dir.path().display())).await;
}

#[tokio::test]
async fn postgres_five_failures_throttle_strangers_but_not_the_owner() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_five_failures_throttle_strangers_but_not_the_owner")
            .await
    else {
        return;
    };
    throttling(&pg.app_url).await;
}

#[tokio::test]
async fn sqlite_refresh_rotation_reuse_idle_and_logout() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    crate::support::sqlite(&dir).await.close().await;
    refresh_family(&format!("sqlite://{}/carapace.db", dir.path().display())).await;
}

#[tokio::test]
async fn postgres_refresh_rotation_reuse_idle_and_logout() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_refresh_rotation_reuse_idle_and_logout").await
    else {
        return;
    };
    refresh_family(&pg.app_url).await;
}

#[tokio::test]
async fn sqlite_exactly_one_of_two_concurrent_refreshes_succeeds() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    crate::support::sqlite(&dir).await.close().await;
    concurrent_rotation(&format!("sqlite://{}/carapace.db", dir.path().display())).await;
}

#[tokio::test]
async fn postgres_exactly_one_of_two_concurrent_refreshes_succeeds() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_exactly_one_of_two_concurrent_refreshes_succeeds")
            .await
    else {
        return;
    };
    concurrent_rotation(&pg.app_url).await;
}

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
