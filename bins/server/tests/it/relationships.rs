//! Who reaches which patient: care teams, break-glass, own records, and the
//! organization-wide clinician setting.

use carapace_audit::SecurityEventKind;
use carapace_auth::Role;
use carapace_tenancy::ClinicianScope;
use serde_json::{Value, json};

use crate::authorization::set_scope;
use crate::support::{Backend, TestApp, patient, problem, send, spawn_app};

async fn ids(app: &TestApp, token: &str) -> Vec<String> {
    app.all_patients(token)
        .await
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(&body)).await
}

async fn care_team_rules(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let staff = app.token_as(&org, Role::Staff, "front-desk");

    let p = app.new_patient(&admin, "Unassigned").await;
    let path = format!("/api/v1/patients/{p}");
    let denied = problem(app.get(&path, &ada).await, 403).await;
    assert_eq!(denied["code"], "no_relationship");
    problem(
        app.patch(&path, &ada, &json!({"family_name": "X"})).await,
        403,
    )
    .await;
    assert!(
        !app.events
            .of(SecurityEventKind::AuthorizationDenied)
            .is_empty()
    );

    // Registering a patient puts the clinician in its care team.
    let q = app.new_patient(&ada, "Ada's").await;
    assert_eq!(ids(&app, &ada).await, vec![q.clone()]);
    assert!(ids(&app, &bob).await.is_empty());
    let mut all = ids(&app, &staff).await;
    all.sort();
    let mut expected = vec![p.clone(), q.clone()];
    expected.sort();
    assert_eq!(all, expected, "staff read the whole organization");

    // An admin assigns Ada to P.
    let res = post(
        &app,
        &format!("{path}/care-team"),
        &admin,
        json!({"subject": "clinician-ada"}),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get(&path, &ada).await.status(), 200);
    // … and Cy as a consultant; the team lists each role.
    let res = post(
        &app,
        &format!("{path}/care-team"),
        &admin,
        json!({"subject": "clinician-cy", "role": "consulting"}),
    )
    .await;
    assert_eq!(res.status(), 204);
    let bad_role = post(
        &app,
        &format!("{path}/care-team"),
        &admin,
        json!({"subject": "clinician-cy", "role": "chief"}),
    )
    .await;
    assert_eq!(problem(bad_role, 422).await["errors"][0]["field"], "role");
    let team: serde_json::Value = app
        .get(&format!("{path}/care-team"), &ada)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        team,
        json!([{"subject": "clinician-ada", "role": "primary"},
               {"subject": "clinician-cy", "role": "consulting"}])
    );
    problem(app.get(&format!("{path}/care-team"), &bob).await, 403).await;
    problem(
        post(
            &app,
            &format!("{path}/care-team"),
            &ada,
            json!({"subject": "clinician-bob"}),
        )
        .await,
        403,
    )
    .await;

    // Bob declares an emergency.
    problem(
        post(
            &app,
            &format!("{path}/break-glass"),
            &bob,
            json!({"reason": "urgent"}),
        )
        .await,
        422,
    )
    .await;
    problem(
        post(
            &app,
            &format!("{path}/break-glass"),
            &staff,
            json!({"reason": "front desk is curious about this one"}),
        )
        .await,
        403,
    )
    .await;
    let unknown = format!("/api/v1/patients/{}/break-glass", uuid::Uuid::now_v7());
    problem(
        post(
            &app,
            &unknown,
            &bob,
            json!({"reason": "patient collapsed in the waiting room"}),
        )
        .await,
        404,
    )
    .await;
    let grant = post(
        &app,
        &format!("{path}/break-glass"),
        &bob,
        json!({"reason": "patient collapsed in the waiting room"}),
    )
    .await;
    assert_eq!(grant.status(), 201);
    assert_eq!(app.get(&path, &bob).await.status(), 200);
    assert_eq!(ids(&app, &bob).await, vec![p.clone()]);
    let events = app.events.of(SecurityEventKind::BreakGlass);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject.as_str(), "clinician-bob");
    assert!(
        !events[0].detail.contains("collapsed"),
        "the reason stays out of events and logs"
    );

    // The organization may widen clinicians to everyone.
    let carol = app.token_as(&org, Role::Clinician, "clinician-carol");
    problem(app.get(&path, &carol).await, 403).await;
    set_scope(&app, &org, ClinicianScope::Organization).await;
    assert_eq!(app.get(&path, &carol).await.status(), 200);
    assert_eq!(ids(&app, &carol).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn clinicians_reach_their_care_team_and_break_glass_on_sqlite() {
    care_team_rules(
        Backend::Sqlite,
        "clinicians_reach_their_care_team_and_break_glass_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn clinicians_reach_their_care_team_and_break_glass_on_postgres() {
    care_team_rules(
        Backend::Postgres,
        "clinicians_reach_their_care_team_and_break_glass_on_postgres",
    )
    .await;
}

#[tokio::test]
async fn patients_reach_only_their_own_record() {
    let Some(app) = spawn_app(Backend::Sqlite, "patients_reach_only_their_own_record").await else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let mine = app.new_patient(&admin, "Mine").await;
    let theirs = app.new_patient(&admin, "Theirs").await;
    let link = send(
        app.http
            .put(app.url(&format!("/api/v1/patients/{mine}/account")))
            .bearer_auth(&admin)
            .json(&json!({"subject": "patient-1"})),
    )
    .await;
    assert_eq!(link.status(), 204);
    let me = app.token_as(&org, Role::Patient, "patient-1");
    assert_eq!(
        app.get(&format!("/api/v1/patients/{mine}"), &me)
            .await
            .status(),
        200
    );
    assert_eq!(
        problem(
            app.get(&format!("/api/v1/patients/{theirs}"), &me).await,
            403
        )
        .await["code"],
        "no_relationship"
    );
    assert_eq!(ids(&app, &me).await, vec![mine.clone()]);
    problem(
        app.patch(
            &format!("/api/v1/patients/{mine}"),
            &me,
            &json!({"phone": "+1 555 010 0199"}),
        )
        .await,
        403,
    )
    .await;
    problem(app.create_patient(&me, &patient("Self-made")).await, 403).await;
    let stranger = app.token_as(&org, Role::Patient, "patient-2");
    assert!(ids(&app, &stranger).await.is_empty());
    app.stop().await;
}
