//! An administrator impersonating a user tries to take the account over:
//! enrol a second factor they hold (so the target's next login asks for
//! it), or change any other credential. Every credential change is 403
//! while impersonating, the refusal is recorded naming both identities, and
//! so is everything else the impersonated session does.

use carapace_auth::Role;
use serde_json::json;

use super::kit::{
    Net, PASSWORD, account, login_from, of, ok_json, on_both, post, proxied, security_trail, text,
};
use crate::support::{TestApp, problem};

on_both!(
    an_impersonated_session_cannot_change_the_targets_credentials,
    proxied
);

async fn an_impersonated_session_cannot_change_the_targets_credentials(app: &TestApp) {
    let org = app.org().await;
    let target = account(app, &org, "doc@example.org", Role::Clinician).await;
    let admin = app.token_as(&org, Role::Admin, "admin-ann");
    let imp = ok_json(
        post(
            app,
            &format!("/api/v1/users/{target}/impersonate"),
            Some(&admin),
            json!({}),
        )
        .await,
    )
    .await;
    let token = text(&imp, "access_token");

    // The impersonated session works for ordinary things, attributed to both.
    let created = app
        .create_patient(&token, &crate::support::patient("Ivy"))
        .await;
    assert_eq!(created.status(), 201);

    for path in [
        "/api/v1/auth/mfa/totp/enroll",
        "/api/v1/auth/mfa/totp/activate",
    ] {
        let body = if path.ends_with("activate") {
            json!({"code": "123456"})
        } else {
            json!({})
        };
        let res = post(app, path, Some(&token), body).await;
        let problem = problem(res, 403).await;
        assert_eq!(problem["code"], "forbidden", "{path}");
    }
    let trail = security_trail(app, &org).await;
    let refusals: Vec<_> = of(&trail, "security.authorization_denied")
        .into_iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("impersonating"))
        })
        .collect();
    assert_eq!(refusals.len(), 2, "{trail:?}");
    for e in &refusals {
        assert_eq!(e["actor"], target.as_str(), "names the target");
        assert_eq!(e["acting_for"], "admin-ann", "names the administrator");
    }
    // The trail shows both on what the session did.
    let trail = ok_json(
        app.get(
            "/api/v1/audit-events?resource_type=patient&action=patient.create",
            &app.token(&org, Role::Compliance),
        )
        .await,
    )
    .await;
    let create = &trail["items"][0];
    assert_eq!(create["actor"], target.as_str(), "{trail}");
    assert_eq!(create["acting_for"], "admin-ann", "{trail}");

    // The target's next login asks for no factor the admin holds.
    let own =
        ok_json(login_from(app, &org, "doc@example.org", PASSWORD, &Net::random().at(1)).await)
            .await;
    assert!(own.get("mfa_required").is_none(), "{own}");
    assert!(own["access_token"].is_string());
}
