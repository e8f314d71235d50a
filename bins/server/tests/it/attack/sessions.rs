//! Sessions an attacker holds on to, and second factors used twice.
//!
//! - A stolen session outlives a credential change: enabling MFA must end
//!   every other session of the account at once, access tokens included.
//! - One MFA challenge, two codes (a TOTP and a recovery code, or two
//!   recovery codes): one challenge starts at most one session, even when
//!   the two requests race.
//! - Two tabs refreshing with the same token at once must both stay signed
//!   in (the same successor), while a replay after the grace window still
//!   ends the whole family.
//! - A calendar feed must not outlive its practitioner's lock or
//!   deactivation.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::kit::{
    Net, PASSWORD, account, enable_totp, login_from, ok_json, on_both, post, proxied, text,
};
use crate::support::{TestApp, problem};

const EMAIL: &str = "doc@example.org";

async fn sign_in(app: &TestApp, org: &crate::support::Org, client: &str) -> Value {
    ok_json(login_from(app, org, EMAIL, PASSWORD, client).await).await
}

on_both!(enabling_mfa_ends_every_other_session_at_once, proxied);

async fn enabling_mfa_ends_every_other_session_at_once(app: &TestApp) {
    let client = Net::random().at(1);
    let org = app.org().await;
    account(app, &org, EMAIL, Role::Clinician).await;
    let mine = sign_in(app, &org, &client).await;
    let stolen = sign_in(app, &org, &client).await;
    let stolen_access = text(&stolen, "access_token");
    assert_eq!(
        app.get("/api/v1/patients", &stolen_access).await.status(),
        200
    );

    enable_totp(app, &text(&mine, "access_token")).await;

    // The other session is over: its unexpired access token and its
    // refresh token are refused now, not in fifteen minutes.
    problem(app.get("/api/v1/patients", &stolen_access).await, 401).await;
    problem(
        post(
            app,
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": stolen["refresh_token"]}),
        )
        .await,
        401,
    )
    .await;
    // The session that made the change goes on.
    assert_eq!(
        app.get("/api/v1/patients", &text(&mine, "access_token"))
            .await
            .status(),
        200
    );
    ok_json(
        post(
            app,
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": mine["refresh_token"]}),
        )
        .await,
    )
    .await;
}

on_both!(one_mfa_challenge_starts_at_most_one_session, proxied);

async fn one_mfa_challenge_starts_at_most_one_session(app: &TestApp) {
    let client = Net::random().at(1);
    let org = app.org().await;
    account(app, &org, EMAIL, Role::Clinician).await;
    let first = sign_in(app, &org, &client).await;
    let (_, recovery) = enable_totp(app, &text(&first, "access_token")).await;
    let challenge = || async {
        let body = ok_json(login_from(app, &org, EMAIL, PASSWORD, &client).await).await;
        assert_eq!(body["mfa_required"], true, "{body}");
        text(&body, "mfa_token")
    };
    let verify = |token: String, code: String| async move {
        post(
            app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "code": code}),
        )
        .await
    };
    // One after the other: the second code starts nothing.
    let c = challenge().await;
    ok_json(verify(c.clone(), recovery[0].clone()).await).await;
    problem(verify(c.clone(), recovery[1].clone()).await, 401).await;
    // Racing: two fresh recovery codes on one challenge, one session.
    let c = challenge().await;
    let (a, b) = tokio::join!(
        verify(c.clone(), recovery[2].clone()),
        verify(c.clone(), recovery[3].clone())
    );
    let ok = [a.status(), b.status()]
        .iter()
        .filter(|s| s.as_u16() == 200)
        .count();
    assert_eq!(ok, 1, "{} {}", a.status(), b.status());
}

on_both!(
    two_tabs_refresh_together_and_a_late_replay_still_ends_the_family,
    |s: &mut carapace_server::settings::Settings| {
        proxied(s);
        s.refresh_grace_secs = 2;
    }
);

async fn two_tabs_refresh_together_and_a_late_replay_still_ends_the_family(app: &TestApp) {
    let client = Net::random().at(1);
    let org = app.org().await;
    account(app, &org, EMAIL, Role::Clinician).await;
    let t = sign_in(app, &org, &client).await;
    let body = json!({"refresh_token": t["refresh_token"]});
    let (a, b) = tokio::join!(
        post(app, "/api/v1/auth/refresh", None, body.clone()),
        post(app, "/api/v1/auth/refresh", None, body.clone())
    );
    let (a, b) = (ok_json(a).await, ok_json(b).await);
    assert_eq!(
        a["refresh_token"], b["refresh_token"],
        "one successor for both tabs"
    );
    for tab in [&a, &b] {
        assert_eq!(
            app.get("/api/v1/patients", &text(tab, "access_token"))
                .await
                .status(),
            200
        );
    }
    // After the window, the spent token is a replay: the family ends,
    // the successor and its access tokens with it.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    problem(post(app, "/api/v1/auth/refresh", None, body).await, 401).await;
    problem(
        app.get("/api/v1/patients", &text(&a, "access_token")).await,
        401,
    )
    .await;
    problem(
        post(
            app,
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": a["refresh_token"]}),
        )
        .await,
        401,
    )
    .await;
}

on_both!(
    a_calendar_feed_ends_with_its_practitioners_lock_or_deactivation,
    proxied
);

async fn a_calendar_feed_ends_with_its_practitioners_lock_or_deactivation(app: &TestApp) {
    let client = Net::random().at(1);
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    for (email, change) in [
        ("ann@example.org", "lock"),
        ("ben@example.org", "deactivate"),
    ] {
        let id = account(app, &org, email, Role::Clinician).await;
        let session = ok_json(login_from(app, &org, email, PASSWORD, &client).await).await;
        let made = post(
            app,
            "/api/v1/calendar-feeds",
            Some(&text(&session, "access_token")),
            json!({}),
        )
        .await;
        assert_eq!(made.status(), 201);
        let made: Value = made.json().await.unwrap_or_default();
        let url = text(&made, "url");
        assert_eq!(app.get_public(&url).await.status(), 200, "the feed works");
        let res = post(
            app,
            &format!("/api/v1/users/{id}/{change}"),
            Some(&admin),
            json!({}),
        )
        .await;
        assert_eq!(res.status(), 204);
        let after = app.get_public(&url).await;
        assert!(
            after.status().is_client_error(),
            "{change}: {}",
            after.status()
        );
        let text = after.text().await.unwrap_or_default();
        assert!(!text.contains("BEGIN:VCALENDAR"), "{change}: {text}");
    }
}
