//! Locking people out, and getting back in past a lock.
//!
//! - A stranger's wrong passwords must not keep the owner out: failures
//!   throttle attempts from unknown addresses (rising delays), never the
//!   owner at an address they signed in from before.
//! - Guesses racing in parallel must not slip past the throttle: each
//!   attempt is counted before its password is looked at.
//! - After 100 consecutive failures only an administrator reopens the
//!   account, whatever the address.
//! - An administrator's lock is containment: a password reset (by a code
//!   mailed before the lock, or asked for after it) never ends it.

use carapace_auth::Role;
use serde_json::json;

use super::kit::{
    Net, PASSWORD, account, login_from, mails, mails_when, of, ok_json, on_both, post, proxied,
    request_reset, security_trail, user_view,
};
use crate::support::{TestApp, problem};

const EMAIL: &str = "nurse@example.org";

on_both!(
    a_strangers_guesses_throttle_strangers_but_never_the_owner,
    proxied
);

async fn a_strangers_guesses_throttle_strangers_but_never_the_owner(app: &TestApp) {
    let net = Net::random();
    let owner = net.at(200);
    let org = app.org().await;
    account(app, &org, EMAIL, Role::Clinician).await;
    ok_json(login_from(app, &org, EMAIL, PASSWORD, &owner).await).await;
    // Thirty wrong passwords from thirty addresses (a botnet).
    for i in 0..30 {
        let res = login_from(app, &org, EMAIL, "wrong wrong wrong", &net.at(i)).await;
        let body = problem(res, 401).await;
        assert_eq!(body["code"], "invalid_credentials");
    }
    // A stranger with the right password waits like everyone unknown,
    // and learns nothing: the same 401 as a wrong password.
    let body = problem(
        login_from(app, &org, EMAIL, PASSWORD, &net.at(77)).await,
        401,
    )
    .await;
    assert_eq!(body["code"], "invalid_credentials");
    // The owner, where they signed in before, is not refused.
    ok_json(login_from(app, &org, EMAIL, PASSWORD, &owner).await).await;
    // The throttling was recorded once, and no password was checked once
    // it began (the rest were refused unchecked).
    let trail = security_trail(app, &org).await;
    assert_eq!(of(&trail, "security.account_locked").len(), 1, "{trail:?}");
    let checked = of(&trail, "security.login_failed")
        .iter()
        .filter(|e| e["detail"] == "wrong password")
        .count();
    assert_eq!(checked, 5, "five passwords checked, then throttled");
    let unchecked = of(&trail, "security.login_failed")
        .iter()
        .filter(|e| e["detail"] == "throttled: too many recent failures")
        .count();
    assert_eq!(
        unchecked, 26,
        "25 guesses and the stranger's right password"
    );
}

on_both!(
    racing_guesses_are_each_counted_before_their_password_is_checked,
    proxied
);

async fn racing_guesses_are_each_counted_before_their_password_is_checked(app: &TestApp) {
    let net = Net::random();
    let org = app.org().await;
    account(app, &org, EMAIL, Role::Clinician).await;
    let guesses = (0..24).map(|i| {
        let org = org.clone();
        async move {
            login_from(
                app,
                &org,
                EMAIL,
                &format!("guess number {i:02}!"),
                &net.at(i),
            )
            .await
            .status()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let trail = security_trail(app, &org).await;
    let checked = of(&trail, "security.login_failed")
        .iter()
        .filter(|e| e["detail"] == "wrong password")
        .count();
    assert!(
        checked <= 5,
        "{checked} of 24 racing guesses had their password checked; at most the 5 free ones may"
    );
    assert_eq!(of(&trail, "security.login_failed").len(), 24);
}

on_both!(a_hundred_failures_in_a_row_need_an_administrator, proxied);

async fn a_hundred_failures_in_a_row_need_an_administrator(app: &TestApp) {
    let net = Net::random();
    let org = app.org().await;
    let id = account(app, &org, EMAIL, Role::Clinician).await;
    // Six addresses the owner used: failures from them are not delayed
    // per account, and each stays within its own per-address allowance.
    let known: Vec<String> = (1..=6).map(|i| net.at(i)).collect();
    for addr in &known {
        ok_json(login_from(app, &org, EMAIL, PASSWORD, addr).await).await;
    }
    for n in 0..100 {
        let addr = &known[n % known.len()];
        problem(
            login_from(app, &org, EMAIL, "wrong wrong wrong", addr).await,
            401,
        )
        .await;
    }
    // Suspended: the right password from a known address is refused.
    problem(login_from(app, &org, EMAIL, PASSWORD, &known[5]).await, 401).await;
    let admin = app.token(&org, Role::Admin);
    assert_eq!(user_view(app, &admin, &id).await["locked"], true);
    let trail = security_trail(app, &org).await;
    assert!(
        of(&trail, "security.account_locked")
            .iter()
            .any(|e| e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("suspended"))),
        "{trail:?}"
    );
    let res = post(
        app,
        &format!("/api/v1/users/{id}/unlock"),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    ok_json(login_from(app, &org, EMAIL, PASSWORD, &known[5]).await).await;
}

on_both!(a_password_reset_never_ends_an_administrators_lock, proxied);

async fn a_password_reset_never_ends_an_administrators_lock(app: &TestApp) {
    let owner = Net::random().at(1);
    let org = app.org().await;
    let id = account(app, &org, EMAIL, Role::Clinician).await;
    let admin = app.token(&org, Role::Admin);
    // A code mailed before the lock...
    let early = request_reset(app, &org, EMAIL, mails(app).len()).await;
    let res = post(
        app,
        &format!("/api/v1/users/{id}/lock"),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    // ...is void now; and a request during the lock mails nothing.
    let confirm = |code: String| {
        post(
            app,
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({"token": code, "new_password": "an attacker's new passphrase"}),
        )
    };
    problem(confirm(early.clone()).await, 401).await;
    let before = mails(app).len();
    let res = post(
        app,
        "/api/v1/auth/password-reset/request",
        None,
        json!({"org": org.slug, "email": EMAIL}),
    )
    .await;
    assert_eq!(res.status(), 202, "the same answer as for anyone");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(mails(app).len(), before, "no code for a locked account");
    // The lock holds for the old password and for any new one.
    for password in [PASSWORD, "an attacker's new passphrase"] {
        problem(login_from(app, &org, EMAIL, password, &owner).await, 401).await;
    }
    let view = user_view(app, &admin, &id).await;
    assert_eq!(view["locked"], true, "{view}");
    // Only the administrator's unlock ends it.
    let res = post(
        app,
        &format!("/api/v1/users/{id}/unlock"),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    ok_json(login_from(app, &org, EMAIL, PASSWORD, &owner).await).await;
    // After the unlock a fresh code works (and a notice follows it).
    let code = request_reset(app, &org, EMAIL, mails(app).len()).await;
    assert_eq!(confirm(code).await.status(), 204);
    mails_when(app, before + 2).await;
    assert_eq!(user_view(app, &admin, &id).await["locked"], false);
}
