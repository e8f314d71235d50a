use super::*;

async fn access_log_is_for_the_patient_and_compliance(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let pat = app.token_as(&org, Role::Patient, "patient-pat");
    let stranger = app.token_as(&org, Role::Patient, "patient-other");
    let p = app.new_patient(&ada, "Pat").await;
    let linked = send(
        app.http
            .put(app.url(&format!("/api/v1/patients/{p}/account")))
            .bearer_auth(&admin)
            .json(&json!({"subject": "patient-pat"})),
    )
    .await;
    assert_eq!(linked.status(), 204);
    for token in [&ada, &admin, &pat] {
        assert_eq!(
            app.get(&format!("/api/v1/patients/{p}"), token)
                .await
                .status(),
            200
        );
    }

    let log_path = format!("/api/v1/patients/{p}/access-log");
    let res = app.get(&log_path, &pat).await;
    assert_eq!(res.status(), 200);
    let log: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    let reads: Vec<&str> = log["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["action"] == "patient.read")
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert_eq!(reads, vec!["clinician-ada", "test-user", "patient-pat"]);
    assert!(
        log["items"]
            .as_array()
            .is_some_and(|i| i.iter().all(|e| e["resource_id"] == p.as_str())),
        "only this patient's events"
    );

    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    assert_eq!(app.get(&log_path, &compliance).await.status(), 200);
    problem(app.get(&log_path, &stranger).await, 403).await;
    problem(app.get(&log_path, &ada).await, 403).await;
    problem(
        app.get(
            &format!("/api/v1/patients/{}/access-log", uuid::Uuid::new_v4()),
            &compliance,
        )
        .await,
        404,
    )
    .await;

    // Reading the trail is itself in the trail.
    let res = app
        .get("/api/v1/audit-events?actor=compliance-officer", &compliance)
        .await;
    let own: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    let actions: Vec<&str> = own["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"patient.access_log"), "{actions:?}");
}
on_both_backends!(
    access_log_is_for_the_patient_and_compliance_on,
    access_log_is_for_the_patient_and_compliance
);

#[tokio::test]
async fn audit_events_filter_page_and_refuse_bad_input() {
    let Some(app) = spawn_app(Backend::Sqlite, "audit_events_filter_page").await else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let p = app.new_patient(&ada, "Paged").await;
    for _ in 0..5 {
        assert_eq!(
            app.get(&format!("/api/v1/patients/{p}"), &ada)
                .await
                .status(),
            200
        );
    }
    let reads = trail(&app, &org, &format!("&action=patient.read&patient={p}")).await;
    assert_eq!(reads.len(), 5);
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/audit-events?action=patient.read&limit=2&patient={p}");
    loop {
        let page: Value = app
            .get(&path, &compliance)
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(c) => {
                path = format!(
                    "/api/v1/audit-events?action=patient.read&limit=2&patient={p}&cursor={c}"
                )
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "every read once, in pages of two");
    let future = trail(&app, &org, "&from=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());

    for bad in [
        "?outcome=maybe",
        "?limit=0",
        "?limit=501",
        "?from=yesterday",
        "?patient=not-a-uuid",
        "?unknown=1",
    ] {
        let res = app
            .get(&format!("/api/v1/audit-events{bad}"), &compliance)
            .await;
        assert!(
            matches!(res.status().as_u16(), 400 | 422),
            "{bad}: {}",
            res.status()
        );
    }
    let long = "a".repeat(300);
    problem(
        app.get(&format!("/api/v1/audit-events?actor={long}"), &compliance)
            .await,
        422,
    )
    .await;
    // Another org's cursor is refused.
    let other = app.org().await;
    let foreign = app.token_as(&other, Role::Compliance, "them");
    let page: Value = app
        .get("/api/v1/audit-events?limit=1", &compliance)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
    problem(
        app.get(&format!("/api/v1/audit-events?cursor={cursor}"), &foreign)
            .await,
        400,
    )
    .await;
    // Only compliance and admins read the trail.
    for role in [Role::Clinician, Role::Staff, Role::Viewer, Role::Patient] {
        problem(
            app.get("/api/v1/audit-events", &app.token(&org, role))
                .await,
            403,
        )
        .await;
    }
    assert_eq!(
        app.get("/api/v1/audit-events", &app.token(&org, Role::Admin))
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_phi_read_whose_event_cannot_be_written_fails_without_phi() {
    let test = "phi_read_fails_when_audit_unwritable";
    let Some((app, pg, _)) = crate::support::spawn_on_fresh_postgres(test, true).await else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let p = app.new_patient(&admin, "Zephyrine").await;
    carapace_testkit::exec_as_owner(
        &pg,
        &format!(
            "REVOKE INSERT ON audit_events FROM {}",
            carapace_testkit::APP_ROLE
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for res in [
        app.get(&format!("/api/v1/patients/{p}"), &admin).await,
        app.get("/api/v1/patients", &admin).await,
    ] {
        assert!(res.status().is_server_error(), "{}", res.status());
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let body = res.text().await.unwrap_or_default();
        assert!(!body.contains("Zephyrine"), "no PHI in {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn logins_lockouts_refresh_reuse_and_admin_actions_are_recorded() {
    use crate::auth::{PASSWORD, login, tokens, user};
    // A spent refresh token presented again is a reuse at once.
    let Some(app) = spawn_app_with(Backend::Sqlite, "auth_and_admin_events", |s| {
        s.refresh_grace_secs = 0;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    let first = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    for _ in 0..5 {
        problem(
            login(&app, &org.slug, "doc@example.org", "wrong wrong wrong").await,
            401,
        )
        .await;
    }
    problem(
        login(&app, &org.slug, "nobody@example.org", "wrong wrong wrong").await,
        401,
    )
    .await;
    for _ in 0..2 {
        let _ = send(
            app.http
                .post(app.url("/api/v1/auth/refresh"))
                .json(&json!({"refresh_token": first["refresh_token"]})),
        )
        .await;
    }
    let admin = app.token(&org, Role::Admin);
    let key = send(
        app.http
            .post(app.url("/api/v1/service-keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "voice bot", "roles": ["service"]})),
    )
    .await;
    assert_eq!(key.status(), 201);
    // A reset code nobody issued is refused, and recorded.
    let (code, _) = carapace_auth::local::ResetToken::generate(org.id);
    let refused = send(
        app.http
            .post(app.url("/api/v1/auth/password-reset/confirm"))
            .json(&json!({"token": secrecy::ExposeSecret::expose_secret(&code), "new_password": "a brand new passphrase"})),
    )
    .await;
    assert_eq!(refused.status(), 401);

    let security = trail(&app, &org, "&resource_type=security").await;
    let actions: Vec<(&str, &str)> = security
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let count = |a: &str| actions.iter().filter(|(x, _)| *x == a).count();
    assert_eq!(count("security.login_succeeded"), 1, "{actions:?}");
    assert_eq!(
        count("security.login_failed"),
        6,
        "five wrong passwords, one unknown account"
    );
    assert_eq!(count("security.account_locked"), 1);
    assert_eq!(
        count("security.refresh_token_reused"),
        1,
        "the second use is the reuse"
    );
    assert!(
        security
            .iter()
            .any(|e| e["action"] == "security.admin_action"
                && e["detail"] == "service_key.create"
                && e["actor"] == "test-user"),
        "{actions:?}"
    );
    let text = serde_json::to_string(&security).unwrap_or_default();
    assert!(
        !text.contains("wrong wrong") && !text.contains(PASSWORD),
        "no secrets in events"
    );
    app.stop().await;
}
