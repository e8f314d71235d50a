//! MFA for PHI is required of every staff session unless an organization
//! relaxes it, explicitly and on the record. A fresh organization refuses
//! a password-only clinician; relaxing needs a reason, is recorded as its
//! own security event, and a silent relaxation (no reason) changes
//! nothing.

use carapace_auth::Role;
use serde_json::{Value, json};

use super::kit::{defaults, of, ok_json, on_both, security_trail};
use crate::support::{TestApp, patient, problem, send};

on_both!(
    staff_need_mfa_for_phi_until_an_admin_relaxes_it_on_the_record,
    defaults
);

async fn put_settings(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

async fn staff_need_mfa_for_phi_until_an_admin_relaxes_it_on_the_record(app: &TestApp) {
    let org = app.org_with_defaults().await;
    let admin = app.token(&org, Role::Admin);
    let settings = ok_json(app.get("/api/v1/organization/settings", &admin).await).await;
    assert_eq!(settings["phi_mfa"], "all_staff", "{settings}");
    for role in [Role::Clinician, Role::Staff, Role::Viewer] {
        let without = app.token_without_mfa(&org, role);
        let body = problem(app.get("/api/v1/patients", &without).await, 403).await;
        assert_eq!(body["code"], "mfa_required", "{role:?}");
    }
    let clinician = app.token_without_mfa(&org, Role::Clinician);
    problem(app.create_patient(&clinician, &patient("Nope")).await, 403).await;
    // With MFA, staff work as before.
    assert_eq!(
        app.create_patient(&app.token(&org, Role::Clinician), &patient("Yes"))
            .await
            .status(),
        201
    );

    // A relaxation without a reason (or with a token one) is refused and
    // changes nothing.
    let relax = |reason: Option<&str>| {
        let mut body = json!({"clinician_scope": "care_team", "phi_mfa": "admin"});
        if let Some(r) = reason {
            body["phi_mfa_reason"] = json!(r);
        }
        body
    };
    for reason in [None, Some("short"), Some(" \t ")] {
        let body = problem(put_settings(app, &admin, relax(reason)).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "phi_mfa_reason", "{body}");
    }
    problem(app.get("/api/v1/patients", &clinician).await, 403).await;
    // Not from an admin without MFA either.
    problem(
        put_settings(
            app,
            &app.token_without_mfa(&org, Role::Admin),
            relax(Some("front desk tablets cannot do MFA yet")),
        )
        .await,
        403,
    )
    .await;

    let reason = "front desk tablets cannot do MFA until the new devices arrive";
    let done = ok_json(put_settings(app, &admin, relax(Some(reason))).await).await;
    assert_eq!(done["phi_mfa"], "admin");
    assert!(done.get("phi_mfa_reason").is_none(), "{done}");
    assert_eq!(app.get("/api/v1/patients", &clinician).await.status(), 200);
    let trail = security_trail(app, &org).await;
    let relaxed = of(&trail, "security.phi_mfa_relaxed");
    assert_eq!(relaxed.len(), 1, "{trail:?}");
    assert!(
        relaxed[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(reason)),
        "{trail:?}"
    );
    // Tightening again needs no reason, and takes one nowhere else.
    let tight = json!({"clinician_scope": "care_team", "phi_mfa": "all_staff"});
    ok_json(put_settings(app, &admin, tight.clone()).await).await;
    let mut with_reason = tight;
    with_reason["phi_mfa_reason"] = json!("not a relaxation at all");
    problem(put_settings(app, &admin, with_reason).await, 422).await;
    problem(app.get("/api/v1/patients", &clinician).await, 403).await;
}
