//! Deny by default over HTTP: every protected route refuses anonymous
//! callers; the role matrix holds route by route; admin needs MFA.

use carapace_auth::Role;
use carapace_auth::policy::{Permission, permissions_of};
use carapace_server::http::access::{Access, ROUTES};
use serde_json::json;

use carapace_tenancy::ClinicianScope;

use crate::support::{Backend, Org, TestApp, patient, problem, send, spawn_app};

/// Sets the org's clinician scope through the settings API.
pub(crate) async fn set_scope(app: &TestApp, org: &Org, scope: ClinicianScope) {
    let admin = app.token(org, Role::Admin);
    let body = json!({"clinician_scope": scope.as_str(), "phi_mfa": "admin"});
    let res = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(&admin)
            .json(&body),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn every_protected_route_refuses_anonymous_callers() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "every_protected_route_refuses_anonymous_callers",
    )
    .await
    else {
        return;
    };
    let id = uuid::Uuid::now_v7().to_string();
    let mut checked = 0;
    for (method, pattern, access) in ROUTES {
        if *access == Access::Public {
            continue;
        }
        let path = pattern.replace("{id}", &id);
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let res = send(
            app.http
                .request(method.clone(), app.url(&path))
                .json(&json!({})),
        )
        .await;
        if path.starts_with("/fhir/") {
            // The FHIR surface answers the same refusal as an OperationOutcome.
            assert_eq!(res.status(), 401, "{method} {path}");
            let body: serde_json::Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(body["resourceType"], "OperationOutcome", "{method} {path}");
            assert_eq!(body["issue"][0]["code"], "login", "{method} {path}");
        } else {
            problem(res, 401).await;
        }
        checked += 1;
    }
    assert!(checked >= 10, "checked {checked} routes");
    app.stop().await;
}

#[tokio::test]
async fn each_role_gets_exactly_its_patient_permissions() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "each_role_gets_exactly_its_patient_permissions",
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    // The role matrix alone: clinicians reach the whole org here, and each
    // record is linked to the caller (relationships have their own tests).
    set_scope(&app, &org, ClinicianScope::Organization).await;
    let admin = app.token(&org, Role::Admin);
    for role in Role::ALL {
        let token = app.token(&org, role);
        let grants = |p: Permission| permissions_of(role).contains(&p);
        let id = app.new_patient(&admin, "Subject").await;
        let path = format!("/api/v1/patients/{id}");
        let link = send(
            app.http
                .put(app.url(&format!("{path}/account")))
                .bearer_auth(&admin)
                .json(&json!({"subject": "test-user"})),
        )
        .await;
        assert_eq!(link.status(), 204);

        let read = app.get(&path, &token).await.status().as_u16();
        assert_eq!(
            read,
            if grants(Permission::PatientRead) {
                200
            } else {
                403
            },
            "{role} read"
        );
        let list = app.get("/api/v1/patients", &token).await.status().as_u16();
        assert_eq!(
            list,
            if grants(Permission::PatientRead) {
                200
            } else {
                403
            },
            "{role} list"
        );
        let create = app
            .create_patient(&token, &patient("New"))
            .await
            .status()
            .as_u16();
        assert_eq!(
            create,
            if grants(Permission::PatientWrite) {
                201
            } else {
                403
            },
            "{role} create"
        );
        let patch = app
            .patch(&path, &token, &json!({"family_name": "Changed"}))
            .await
            .status()
            .as_u16();
        assert_eq!(
            patch,
            if grants(Permission::PatientWrite) {
                200
            } else {
                403
            },
            "{role} patch"
        );
        let delete = app.delete(&path, &token).await.status().as_u16();
        assert_eq!(
            delete,
            if grants(Permission::PatientDelete) {
                204
            } else {
                403
            },
            "{role} delete"
        );
        let keys = app
            .get("/api/v1/service-keys", &token)
            .await
            .status()
            .as_u16();
        assert_eq!(
            keys,
            if grants(Permission::ServiceKeyAdmin) {
                200
            } else {
                403
            },
            "{role} service keys"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn admin_needs_mfa_for_phi_and_administration() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "admin_needs_mfa_for_phi_and_administration",
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    let no_mfa = app.token_without_mfa(&org, Role::Admin);
    let p = problem(app.get("/api/v1/patients", &no_mfa).await, 403).await;
    assert_eq!(p["code"], "mfa_required");
    let denied = app
        .events
        .of(carapace_audit::SecurityEventKind::AuthorizationDenied);
    assert_eq!(denied.len(), 1, "the denial is a security event");
    assert_eq!(denied[0].org, org.id);
    assert!(
        denied[0].detail.starts_with("patient:read"),
        "{}",
        denied[0].detail
    );
    assert_eq!(p["type"], "urn:carapace:problem:mfa_required");
    let body = json!({"name": "bot", "roles": ["service"]});
    let res = send(
        app.http
            .post(app.url("/api/v1/service-keys"))
            .bearer_auth(&no_mfa)
            .json(&body),
    )
    .await;
    assert_eq!(problem(res, 403).await["code"], "mfa_required");

    let mfa = app.token(&org, Role::Admin);
    assert_eq!(app.get("/api/v1/patients", &mfa).await.status(), 200);
    let res = send(
        app.http
            .post(app.url("/api/v1/service-keys"))
            .bearer_auth(&mfa)
            .json(&body),
    )
    .await;
    assert_eq!(res.status(), 201);
    // A clinician's own grant needs no step-up.
    let clinician = app.token_without_mfa(&org, Role::Clinician);
    assert_eq!(app.get("/api/v1/patients", &clinician).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn host_naming_another_org_is_refused() {
    use crate::support::spawn_app_with;
    let Some(app) = spawn_app_with(Backend::Sqlite, "host_naming_another_org_is_refused", |s| {
        s.base_domain = Some("clinics.test".into());
    })
    .await
    else {
        return;
    };
    let a = app.org().await;
    let b = app.org().await;
    let token = app.token(&a, Role::Clinician);
    let with_host = |host: String| {
        send(
            app.http
                .get(app.url("/api/v1/patients"))
                .bearer_auth(&token)
                .header("host", host),
        )
    };
    assert_eq!(
        with_host(format!("{}.clinics.test", a.slug)).await.status(),
        200
    );
    assert_eq!(
        with_host("clinics.test".into()).await.status(),
        200,
        "the shared API host"
    );
    problem(with_host(format!("{}.clinics.test", b.slug)).await, 403).await;
    problem(with_host("no-such-org.clinics.test".into()).await, 403).await;
    let events = app
        .events
        .of(carapace_audit::SecurityEventKind::HostOrgMismatch);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].org, a.id);
    app.stop().await;
}

#[tokio::test]
async fn organizations_may_require_mfa_from_all_staff_for_phi() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "organizations_may_require_mfa_from_all_staff_for_phi",
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    let viewer = app.token_without_mfa(&org, Role::Viewer);
    assert_eq!(app.get("/api/v1/patients", &viewer).await.status(), 200);
    let admin = app.token(&org, Role::Admin);
    let put = |body: serde_json::Value| {
        send(
            app.http
                .put(app.url("/api/v1/organization/settings"))
                .bearer_auth(&admin)
                .json(&body),
        )
    };
    problem(
        put(json!({"clinician_scope": "everyone", "phi_mfa": "sometimes"})).await,
        422,
    )
    .await;
    assert_eq!(
        put(json!({"clinician_scope": "care_team", "phi_mfa": "all_staff"}))
            .await
            .status(),
        200
    );
    let changed = app
        .events
        .of(carapace_audit::SecurityEventKind::OrgSettingsChanged);
    assert_eq!(changed.len(), 1);
    assert_eq!(
        changed[0].detail,
        "clinician_scope=care_team phi_mfa=all_staff calendar_detail=minimal external_referrals=false ai_baa=false"
    );
    let p = problem(app.get("/api/v1/patients", &viewer).await, 403).await;
    assert_eq!(p["code"], "mfa_required");
    // Writing PHI needs it too.
    let clinician = app.token_without_mfa(&org, Role::Clinician);
    let p = problem(
        app.create_patient(&clinician, &crate::support::patient("Nia"))
            .await,
        403,
    )
    .await;
    assert_eq!(p["code"], "mfa_required");
    assert_eq!(
        app.get("/api/v1/patients", &app.token(&org, Role::Viewer))
            .await
            .status(),
        200
    );
    let settings: serde_json::Value = app
        .get("/api/v1/organization/settings", &admin)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        settings,
        json!({"clinician_scope": "care_team", "phi_mfa": "all_staff",
               "calendar_detail": "minimal", "external_referrals": false, "ai_baa": false})
    );
    problem(
        app.get(
            "/api/v1/organization/settings",
            &app.token(&org, Role::Clinician),
        )
        .await,
        403,
    )
    .await;
    app.stop().await;
}
