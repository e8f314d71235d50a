//! Reset codes an attacker might still hold: an older one after a newer
//! was asked for, one already used (or raced), one mailed before the
//! account was deactivated. Only the newest code works, once; using it
//! voids the rest; deactivation voids all; and the owner is told, by a
//! mail that carries nothing usable.

use carapace_auth::Role;
use serde_json::json;

use super::kit::{
    Net, PASSWORD, account, login_from, mails, mails_when, on_both, post, proxied, request_reset,
    reset_code,
};
use crate::support::{TestApp, problem};

const EMAIL: &str = "doc@example.org";

async fn confirm(app: &TestApp, code: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/password-reset/confirm",
        None,
        json!({"token": code, "new_password": password}),
    )
    .await
}

on_both!(
    only_the_newest_code_works_once_and_the_owner_is_told,
    proxied
);

async fn only_the_newest_code_works_once_and_the_owner_is_told(app: &TestApp) {
    let client = Net::random().at(1);
    let org = app.org().await;
    account(app, &org, EMAIL, Role::Clinician).await;
    let c1 = request_reset(app, &org, EMAIL, 0).await;
    let c2 = request_reset(app, &org, EMAIL, 1).await;
    assert_ne!(c1, c2);
    // The older code is void the moment a newer one is asked for.
    problem(confirm(app, &c1, "the first new passphrase").await, 401).await;
    let c3 = request_reset(app, &org, EMAIL, 2).await;
    // Two requests race with the newest code: exactly one wins.
    let (a, b) = tokio::join!(
        confirm(app, &c3, "the second new passphrase"),
        confirm(app, &c3, "a third new passphrase!")
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 401]);
    // Spent: neither it nor the voided ones work any more.
    for code in [&c1, &c2, &c3] {
        problem(confirm(app, code, "yet another passphrase").await, 401).await;
    }
    // The owner got a notice, and it carries no usable code.
    let all = mails_when(app, 4).await;
    let notice = &all[3];
    assert!(notice.contains("password was changed"), "{notice}");
    assert_eq!(reset_code(notice), None, "{notice}");
    assert!(!notice.contains(&c3) && !notice.contains("crr_"));
    // Old password dead, exactly one of the new ones alive.
    problem(login_from(app, &org, EMAIL, PASSWORD, &client).await, 401).await;
    let second = login_from(app, &org, EMAIL, "the second new passphrase", &client).await;
    let third = login_from(app, &org, EMAIL, "a third new passphrase!", &client).await;
    assert_eq!(
        [second.status().as_u16(), third.status().as_u16()]
            .iter()
            .filter(|s| **s == 200)
            .count(),
        1
    );
}

on_both!(a_code_mailed_before_deactivation_opens_nothing, proxied);

async fn a_code_mailed_before_deactivation_opens_nothing(app: &TestApp) {
    let client = Net::random().at(1);
    let org = app.org().await;
    let id = account(app, &org, EMAIL, Role::Clinician).await;
    let code = request_reset(app, &org, EMAIL, 0).await;
    let admin = app.token(&org, Role::Admin);
    let res = post(
        app,
        &format!("/api/v1/users/{id}/deactivate"),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    problem(confirm(app, &code, "a passphrase after leaving").await, 401).await;
    // No new code is mailed to a deactivated account either.
    let res = post(
        app,
        "/api/v1/auth/password-reset/request",
        None,
        json!({"org": org.slug, "email": EMAIL}),
    )
    .await;
    assert_eq!(res.status(), 202);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(mails(app).len(), 1);
    for password in [PASSWORD, "a passphrase after leaving"] {
        problem(login_from(app, &org, EMAIL, password, &client).await, 401).await;
    }
}
