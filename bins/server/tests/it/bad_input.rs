//! Bad input gets a clear 4xx problem+json and changes nothing.

use carapace_auth::Role;
use serde_json::json;

use crate::support::{Backend, TestApp, patient, problem, send, spawn_app};

async fn app_with_token(test: &str) -> Option<(TestApp, String)> {
    let app = spawn_app(Backend::Sqlite, test).await?;
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    Some((app, token))
}

async fn post_raw(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/patients"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn malformed_json_is_400_and_writes_nothing() {
    let Some((app, token)) = app_with_token("malformed_json_is_400_and_writes_nothing").await
    else {
        return;
    };
    for body in [&b"{\"given_name\": "[..], b"not json", b"", b"[1,2"] {
        problem(
            post_raw(&app, &token, "application/json", body.to_vec()).await,
            400,
        )
        .await;
    }
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_422_and_writes_nothing() {
    let Some((app, token)) = app_with_token("a_body_that_is_not_an_object_is_422").await else {
        return;
    };
    // serde would fill the struct's fields in order from an array.
    let as_array = json!(["Jane", "Roe", "1980-02-03", null, null, null, null]);
    for body in [as_array, json!([null]), json!("x"), json!(7), json!(null)] {
        let p = problem(
            post_raw(
                &app,
                &token,
                "application/json",
                body.to_string().into_bytes(),
            )
            .await,
            422,
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "body", "{body}");
    }
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let Some((app, token)) = app_with_token("oversized_body_is_413").await else {
        return;
    };
    let mut body = patient("Jane");
    body["family_name"] = json!("x".repeat(70 * 1024));
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    problem(post_raw(&app, &token, "application/json", bytes).await, 413).await;
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn deep_or_wide_bodies_are_400_and_write_nothing() {
    let Some((app, token)) = app_with_token("deep_or_wide_bodies").await else {
        return;
    };
    let mut deep = json!("leaf");
    for _ in 0..20 {
        deep = json!([deep]);
    }
    let mut nested = patient("Jane");
    nested["family_name"] = deep;
    let mut wide = patient("Jane");
    wide["family_name"] = json!(vec![1; 300]);
    for (what, body) in [("deep", nested), ("wide", wide)] {
        let p = problem(app.create_patient(&token, &body).await, 400).await;
        assert_eq!(p["code"], "malformed_body", "{what}");
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("16 levels") || d.contains("256 items")),
            "{what}: {p}"
        );
    }
    // A service key with a list of roles past its limit, on another route.
    let many = json!({"name": "bot", "roles": vec!["viewer"; 300]});
    let admin = app.token(&app.org().await, Role::Admin);
    let res = send(
        app.http
            .post(app.url("/api/v1/service-keys"))
            .bearer_auth(&admin)
            .json(&many),
    )
    .await;
    problem(res, 400).await;
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn long_given_name_is_422() {
    let Some((app, token)) = app_with_token("long_given_name_is_422").await else {
        return;
    };
    let mut body = patient("x");
    body["given_name"] = json!("x".repeat(10_000));
    let p = problem(app.create_patient(&token, &body).await, 422).await;
    assert_eq!(
        p["errors"],
        json!([{ "field": "given_name", "message": "must be 1 to 100 characters" }])
    );
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn non_date_birth_date_is_422() {
    let Some((app, token)) = app_with_token("non_date_birth_date_is_422").await else {
        return;
    };
    for bad in [
        json!("not-a-date"),
        json!("1980-02-30"),
        json!("2999-01-01"),
        json!(19800203),
    ] {
        let mut body = patient("Jane");
        body["birth_date"] = bad.clone();
        let p = problem(app.create_patient(&token, &body).await, 422).await;
        let field = p["errors"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(field == "birth_date" || field == "body", "{bad}: {p}");
    }
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn every_problem_is_listed_and_no_value_is_echoed() {
    let Some((app, token)) = app_with_token("every_problem_is_listed_and_no_value_is_echoed").await
    else {
        return;
    };
    let body = json!({
        "given_name": "", "family_name": "SecretFamily\u{7}", "birth_date": "SecretDate",
        "email": "SecretMail", "phone": "SecretPhone", "member_id": "Secret Member"
    });
    let res = app.create_patient(&token, &body).await;
    let p = problem(res, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        vec![
            "given_name",
            "family_name",
            "birth_date",
            "member_id",
            "phone",
            "email"
        ]
    );
    assert!(!p.to_string().contains("Secret"), "{p}");
    app.stop().await;
}

#[tokio::test]
async fn non_uuid_path_id_is_404() {
    let Some((app, token)) = app_with_token("non_uuid_path_id_is_404").await else {
        return;
    };
    for path in [
        "/api/v1/patients/not-a-uuid",
        "/api/v1/patients/1",
        "/api/v1/patients/%00",
    ] {
        problem(app.get(path, &token).await, 404).await;
    }
    app.stop().await;
}

/// Every id in a path parses into its entity's type before a handler
/// runs: a traversal, an encoded separator or a bare number is no record
/// of any kind, not a route to another one.
#[tokio::test]
async fn a_typed_path_id_refuses_what_is_not_an_id() {
    let Some((app, token)) = app_with_token("a_typed_path_id_refuses_what_is_not_an_id").await
    else {
        return;
    };
    for path in [
        "/api/v1/appointments/%2e%2e",
        "/api/v1/appointments/..%2Fpatients",
        "/api/v1/verification-tasks/1",
        "/api/v1/voicemails/%00",
        "/api/v1/patients/..%2F..%2Fusers/care-team",
    ] {
        problem(app.get(path, &token).await, 404).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_route_is_problem_json_404() {
    let Some(app) = spawn_app(Backend::Sqlite, "unknown_route_is_problem_json_404").await else {
        return;
    };
    for path in ["/nope", "/api/v1/nope", "/api/v2/patients"] {
        let res = app.get_public(path).await;
        problem(res, 404).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_method_is_problem_json_405() {
    let Some((app, token)) = app_with_token("wrong_method_is_problem_json_405").await else {
        return;
    };
    let res = app
        .http
        .put(app.url("/api/v1/patients"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    problem(res, 405).await;
    let res = app
        .http
        .post(app.url("/health/live"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = problem(res, 405).await;
    assert_eq!(p["code"], "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let Some((app, token)) = app_with_token("wrong_content_type_is_415").await else {
        return;
    };
    let body = serde_json::to_vec(&patient("Jane")).unwrap_or_default();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        problem(post_raw(&app, &token, ct, body.clone()).await, 415).await;
    }
    let res = app
        .http
        .post(app.url("/api/v1/patients"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    problem(res, 415).await;
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn bad_query_parameters_are_4xx() {
    let Some((app, token)) = app_with_token("bad_query_parameters_are_4xx").await else {
        return;
    };
    let p = problem(app.get("/api/v1/patients?limit=0", &token).await, 422).await;
    assert_eq!(p["errors"][0]["field"], "limit");
    problem(app.get("/api/v1/patients?limit=abc", &token).await, 422).await;
    problem(app.get("/api/v1/patients?limit=101", &token).await, 422).await;
    let p = problem(app.get("/api/v1/patients?org_id=x", &token).await, 400).await;
    assert_eq!(p["detail"], "unknown query parameter \"org_id\"");
    problem(app.get("/api/v1/patients?cursor=%%%", &token).await, 400).await;
    let long = "m".repeat(65);
    problem(
        app.get(&format!("/api/v1/patients?member_id={long}"), &token)
            .await,
        422,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn request_id_is_kept_when_valid_and_replaced_otherwise() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "request_id_is_kept_when_valid_and_replaced_otherwise",
    )
    .await
    else {
        return;
    };
    let send = |id: &'static str| {
        app.http
            .get(app.url("/health/live"))
            .header("x-request-id", id)
            .send()
    };
    let kept = send("client-id-123")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kept.headers()["x-request-id"], "client-id-123");
    for bad in ["has space", "<script>alert(1)</script>"] {
        let res = send(bad).await.unwrap_or_else(|e| panic!("{e}"));
        let id = res.headers()["x-request-id"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert_ne!(id, bad);
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "replaced with a fresh id: {id}"
        );
    }
    let long: &'static str = Box::leak("a".repeat(200).into_boxed_str());
    let res = send(long).await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(res.headers()["x-request-id"], long);
    app.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_a_generic_500_and_the_server_keeps_serving() {
    let Some(app) =
        crate::support::spawn_app(crate::support::Backend::Sqlite, "handler_panic").await
    else {
        return;
    };
    // More panics than the server has workers.
    for _ in 0..(2 * std::thread::available_parallelism().map_or(2, usize::from) + 1) {
        let res = app.get_public("/__debug/panic").await;
        let request_id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = crate::support::problem(res, 500).await;
        assert_eq!(body["code"], "internal");
        assert_eq!(body["request_id"], request_id.as_str());
        assert!(
            !body.to_string().contains("deliberate"),
            "no panic text leaks: {body}"
        );
    }
    assert_eq!(app.get_public("/health/live").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn phi_in_a_panic_message_is_masked_in_the_logs() {
    let Some(app) = crate::support::spawn_app(crate::support::Backend::Sqlite, "panic_phi").await
    else {
        return;
    };
    // A handler that panics quoting what it was given (a careless unwrap).
    let said = "mail panic.marker@example.org, phone 555-010-4477, born 03/04/1961, MRN 8812-PANIC";
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("say", said)
        .finish();
    let res = send(app.http.get(app.url(&format!("/__debug/panic?{query}")))).await;
    crate::support::problem(res, 500).await;
    app.stop().await;
    let logs = crate::support::captured_log_text();
    assert!(logs.contains("deliberate panic (debug route) mail [EMAIL], phone [PHONE], born [DATE], [RECORD_NUMBER]"), "the panic was logged, masked");
    for phi in [
        "panic.marker@example.org",
        "555-010-4477",
        "03/04/1961",
        "8812-PANIC",
    ] {
        assert!(!logs.contains(phi), "{phi} appears in the logs");
    }
}

#[tokio::test]
async fn oversized_headers_are_refused_before_any_work() {
    let Some((app, token)) = app_with_token("oversized_headers").await else {
        return;
    };
    let res = send(
        app.http
            .post(app.url("/api/v1/patients"))
            .bearer_auth(&token)
            .header("x-padding", "p".repeat(64 * 1024))
            .json(&patient("Jane")),
    )
    .await;
    assert_eq!(
        res.headers().get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
    let body = problem(res, 431).await;
    assert_eq!(body["code"], "headers_too_large");
    assert!(app.all_patients(&token).await.is_empty());
    app.stop().await;
}
