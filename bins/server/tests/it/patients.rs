use carapace_auth::Role;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, patient, problem, spawn_app};

async fn full_lifecycle(app: &TestApp) {
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);

    let res = app.create_patient(&token, &patient("Jane")).await;
    assert_eq!(res.status(), 201);
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let created: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(location, format!("/api/v1/patients/{id}"));
    assert_eq!(created["given_name"], "Jane");
    assert_eq!(created["birth_date"], "1980-02-03");
    assert!(created.get("org_id").is_none());

    let got: Value = app
        .get(&location, &token)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, created);

    let res = app
        .patch(
            &location,
            &token,
            &json!({ "family_name": "Doe", "phone": null }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let patched: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(patched["family_name"], "Doe");
    assert_eq!(patched["given_name"], "Jane");
    assert_eq!(patched["phone"], Value::Null);
    assert_eq!(patched["email"], "jane@example.org");

    let listed = app.all_patients(&token).await;
    assert_eq!(listed, vec![patched.clone()]);

    // Deleting is for admins (with MFA); clinicians may not.
    problem(app.delete(&location, &token).await, 403).await;
    let admin = app.token(&org, Role::Admin);
    let res = app.delete(&location, &admin).await;
    assert_eq!(res.status(), 204);
    problem(app.get(&location, &token).await, 404).await;
    let again = app.delete(&location, &admin).await;
    problem(again, 404).await;
    assert!(app.all_patients(&token).await.is_empty());
}
on_both_backends!(
    clinician_creates_reads_updates_lists_and_deletes_a_patient,
    full_lifecycle
);

async fn paging(app: &TestApp) {
    let org = app.org().await;
    let token = app.token(&org, Role::Admin);
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = patient(&format!("P{i}"));
        body["member_id"] = if i % 2 == 0 {
            "EVEN-1".into()
        } else {
            "ODD-1".into()
        };
        let res = app.create_patient(&token, &body).await;
        let v: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
        ids.push(v["id"].as_str().unwrap_or_default().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/patients?limit=2".to_owned();
    loop {
        let page: Value = app
            .get(&path, &token)
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|p| p["id"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/patients?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let even: Value = app
        .get("/api/v1/patients?member_id=EVEN-1", &token)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let even_ids: Vec<&str> = even["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        even_ids,
        vec![ids[0].as_str(), ids[2].as_str(), ids[4].as_str()]
    );
    // Exact (normalised) search on family name and birth date.
    for (q, expected) in [
        ("family_name=Roe&birth_date=1980-02-03", 5),
        ("family_name=%20roe%20&birth_date=1980-02-03", 5),
        ("family_name=Ro&birth_date=1980-02-03", 0),
        ("family_name=Roe&birth_date=1980-02-04", 0),
    ] {
        let v: Value = app
            .get(&format!("/api/v1/patients?{q}"), &token)
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["items"].as_array().map(Vec::len), Some(expected), "{q}");
    }
    let half = app.get("/api/v1/patients?family_name=Roe", &token).await;
    assert_eq!(half.status(), 422);
}
on_both_backends!(list_pages_with_cursors_and_filters_by_member_id, paging);

#[tokio::test]
async fn viewer_can_read_but_not_write() {
    let Some(app) = spawn_app(Backend::Sqlite, "viewer_can_read_but_not_write").await else {
        return;
    };
    let org = app.org().await;
    let clinician = app.token(&org, Role::Clinician);
    let id = app.new_patient(&clinician, "Jane").await;
    for role in [Role::Viewer, Role::Staff] {
        let token = app.token(&org, role);
        assert_eq!(
            app.get(&format!("/api/v1/patients/{id}"), &token)
                .await
                .status(),
            200
        );
        assert_eq!(app.all_patients(&token).await.len(), 1);
        problem(app.create_patient(&token, &patient("Eve")).await, 403).await;
        let patch = app
            .patch(
                &format!("/api/v1/patients/{id}"),
                &token,
                &json!({"given_name": "Eve"}),
            )
            .await;
        problem(patch, 403).await;
        let delete = app.delete(&format!("/api/v1/patients/{id}"), &token).await;
        problem(delete, 403).await;
    }
    for role in [Role::Patient, Role::Compliance, Role::Service] {
        let token = app.token(&org, role);
        problem(
            app.get(&format!("/api/v1/patients/{id}"), &token).await,
            403,
        )
        .await;
    }
    let all = app.all_patients(&clinician).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["given_name"], "Jane", "nothing changed");
    app.stop().await;
}

#[tokio::test]
async fn missing_or_bad_token_is_401_with_www_authenticate() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "missing_or_bad_token_is_401_with_www_authenticate",
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    let good = app.token(&org, Role::Admin);
    let forged = {
        // Same claims, signature from another secret.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
        parts.join(".")
    };
    let cases: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Basic dXNlcjpwYXNz".into()),
        Some("Bearer not-a-jwt".into()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {}", "a".repeat(10_000))),
    ];
    for header in cases {
        let mut req = app
            .http
            .post(app.url("/api/v1/patients"))
            .json(&patient("Jane"));
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{header:?}: {challenge}");
        problem(res, 401).await;
    }
    assert!(
        app.all_patients(&good).await.is_empty(),
        "nothing was written"
    );
    app.stop().await;
}

#[tokio::test]
async fn logs_never_contain_phi() {
    let Some(app) = spawn_app(Backend::Sqlite, "logs_never_contain_phi").await else {
        return;
    };
    let org = app.org().await;
    let token = app.token(&org, Role::Admin);
    let markers = [
        "Wintermarker",
        "Gloamfield",
        "LOGMARK-9981",
        "log.marker@example.org",
    ];
    let body = json!({
        "given_name": markers[0], "family_name": markers[1], "birth_date": "1966-06-06",
        "member_id": markers[2], "email": markers[3]
    });
    let res = app.create_patient(&token, &body).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.get(&format!("/api/v1/patients/{id}"), &token).await;
    app.get(
        &format!("/api/v1/patients?member_id={}", markers[2]),
        &token,
    )
    .await;
    app.patch(
        &format!("/api/v1/patients/{id}"),
        &token,
        &json!({"family_name": markers[1], "phone": "not a phone Wintermarker"}),
    )
    .await;
    let mut bad = body.clone();
    bad["email"] = json!(format!("{}@@", markers[0]));
    problem(app.create_patient(&token, &bad).await, 422).await;
    problem(app.create_patient("Bearer-Wintermarker", &body).await, 401).await;
    app.stop().await;
    let logs = crate::support::captured_log_text();
    assert!(logs.contains("request completed"), "logs were captured");
    for marker in markers.iter().chain(["1966-06-06"].iter()) {
        assert!(!logs.contains(marker), "{marker} appears in the logs");
    }
}
