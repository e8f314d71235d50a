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

mod upkeep;

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
