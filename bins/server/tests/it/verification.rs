//! Prior-authorization calls end to end: staff create a task, a bot (a
//! test client with a `service` key) claims it, reads the minimal view
//! (exactly its fields), reports, uploads the transcript in chunks and
//! completes; the trail shows each bot step as the service account;
//! another organization's bot and a patient's token get nothing.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, problem, send, spawn_app};

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(body)).await
}

/// A service key with role `service` only: call sessions and nothing else.
async fn bot_key(app: &TestApp, admin: &str) -> (String, String) {
    let res = post(
        app,
        admin,
        "/api/v1/service-keys",
        &json!({"name": "voice bot", "roles": ["service"]}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap_or_default();
    (
        body["key"].as_str().unwrap_or_default().to_owned(),
        format!("service:{}", body["id"].as_str().unwrap_or_default()),
    )
}

async fn call_session(app: &TestApp) {
    let org = app.org().await;
    let other = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let (bot, bot_subject) = bot_key(app, &admin).await;
    let (foreign_bot, _) = bot_key(app, &app.token(&other, Role::Admin)).await;
    let p = app.new_patient(&admin, "Verified").await;

    let bad = post(app, &staff, "/api/v1/verification-tasks", &json!({"patient_id": p, "payer_name": "", "payer_phone": "nope", "plan": "Gold", "procedure_codes": []})).await;
    let fields: Vec<String> = problem(bad, 422).await["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(fields, vec!["payer_name", "payer_phone", "procedure_codes"]);
    let created = post(app, &staff, "/api/v1/verification-tasks", &json!({"patient_id": p, "payer_name": "Acme Health", "payer_phone": "+1 800 555 0199", "plan": "Gold PPO", "procedure_codes": ["99213", "J3490"]})).await;
    assert_eq!(created.status(), 201);
    let task: Value = created.json().await.unwrap_or_default();
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    let base = format!("/api/v1/verification-tasks/{id}");

    // The bot finds it in the queue (ids only) and claims it.
    let queue: Value = app
        .get("/api/v1/verification-tasks/queue", &bot)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(queue, json!([{"id": id, "created_at": task["created_at"]}]));
    problem(app.get(&format!("{base}/bot-view"), &bot).await, 404).await;
    assert_eq!(
        post(app, &bot, &format!("{base}/claim"), &json!({}))
            .await
            .status(),
        204
    );
    let again = post(app, &bot, &format!("{base}/claim"), &json!({})).await;
    assert_eq!(problem(again, 409).await["code"], "invalid_transition");

    // The minimal view: exactly these fields.
    let view: Value = app
        .get(&format!("{base}/bot-view"), &bot)
        .await
        .json()
        .await
        .unwrap_or_default();
    let mut keys: Vec<&str> = view
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "birth_date",
            "member_id",
            "patient_name",
            "payer_name",
            "payer_phone",
            "plan",
            "procedure_codes",
            "task_id"
        ]
    );
    assert_eq!(view["patient_name"], "Verified Roe");
    assert_eq!(view["member_id"], "M-100");
    let text = view.to_string();
    assert!(
        !text.contains("555 010 0100") && !text.contains("jane@example.org"),
        "no patient contact"
    );

    // Out of order, too big, before calling: refused, nothing stored.
    let early = post(
        app,
        &bot,
        &format!("{base}/transcript"),
        &json!({"seq": 0, "text": "hello"}),
    )
    .await;
    assert_eq!(problem(early, 409).await["code"], "invalid_transition");
    assert_eq!(
        post(
            app,
            &bot,
            &format!("{base}/progress"),
            &json!({"status": "calling"})
        )
        .await
        .status(),
        204
    );
    let skipped = post(
        app,
        &bot,
        &format!("{base}/transcript"),
        &json!({"seq": 1, "text": "hello"}),
    )
    .await;
    assert_eq!(problem(skipped, 409).await["code"], "chunk_out_of_order");
    let huge = post(
        app,
        &bot,
        &format!("{base}/transcript"),
        &json!({"seq": 0, "text": "x".repeat(16 * 1024 + 1)}),
    )
    .await;
    problem(huge, 422).await;
    for (seq, part) in [
        "Agent: Acme Health, how can I help? ",
        "Bot: verifying 99213. Agent: approved, ref PA-77.",
    ]
    .iter()
    .enumerate()
    {
        let res = post(
            app,
            &bot,
            &format!("{base}/transcript"),
            &json!({"seq": seq, "text": part}),
        )
        .await;
        assert_eq!(res.status(), 200);
    }
    let incomplete = post(
        app,
        &bot,
        &format!("{base}/progress"),
        &json!({"status": "completed"}),
    )
    .await;
    problem(incomplete, 422).await;
    let done = post(
        app,
        &bot,
        &format!("{base}/progress"),
        &json!({"status": "completed", "reference_number": "PA-77"}),
    )
    .await;
    assert_eq!(done.status(), 204);
    let after = post(
        app,
        &bot,
        &format!("{base}/progress"),
        &json!({"status": "calling"}),
    )
    .await;
    assert_eq!(problem(after, 409).await["code"], "invalid_transition");

    // Staff see the outcome and the transcript.
    let seen: Value = app
        .get(&base, &staff)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        (seen["status"].as_str(), seen["reference_number"].as_str()),
        (Some("completed"), Some("PA-77"))
    );
    assert_eq!(seen["claimed_by"], bot_subject.as_str());
    let transcript: Value = app
        .get(&format!("{base}/transcript"), &staff)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert!(
        transcript["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Agent: Acme") && t.ends_with("PA-77."))
    );

    // Other bots, other roles.
    problem(
        app.get(&format!("{base}/bot-view"), &foreign_bot).await,
        404,
    )
    .await;
    problem(
        post(app, &foreign_bot, &format!("{base}/claim"), &json!({})).await,
        404,
    )
    .await;
    let patient = app.token(&org, Role::Patient);
    problem(app.get(&base, &patient).await, 403).await;
    problem(app.get("/api/v1/verification-tasks", &patient).await, 403).await;
    problem(app.get(&format!("/api/v1/patients/{p}"), &bot).await, 403).await;
    problem(app.get(&format!("{base}/bot-view"), &staff).await, 403).await;
    problem(app.get(&format!("{base}/bot-view"), "").await, 401).await;

    // An organization that asks MFA of all staff still lets its bots work
    // (a key cannot do MFA), not its unverified staff.
    let strict = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(&admin)
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "all_staff"})),
    )
    .await;
    assert_eq!(strict.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.get("/api/v1/verification-tasks/queue", &bot)
            .await
            .status(),
        200
    );
    let unverified = app.token_without_mfa(&org, Role::Staff);
    let p403 = problem(
        app.get("/api/v1/verification-tasks", &unverified).await,
        403,
    )
    .await;
    assert_eq!(p403["code"], "mfa_required");

    // The trail: every bot step, as the service account.
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let trail: Value = app
        .get("/api/v1/audit-events?limit=500", &compliance)
        .await
        .json()
        .await
        .unwrap_or_default();
    let bot_steps: Vec<String> = trail["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["actor"] == bot_subject.as_str() && e["outcome"] == "allowed")
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    for step in [
        "verification.list",
        "verification.claim",
        "verification.bot_view",
        "verification.progress",
        "verification.transcript",
    ] {
        assert!(
            bot_steps.iter().any(|s| s == step),
            "{step} in {bot_steps:?}"
        );
    }
    let kinds: Vec<(String, String)> = trail["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["actor"] == bot_subject.as_str())
        .map(|e| (e["action"].to_string(), e["actor_kind"].to_string()))
        .collect();
    assert!(kinds.iter().all(|(_, k)| k == "\"service\""), "{kinds:?}");
    let text = trail.to_string();
    assert!(
        !text.contains("PA-77") && !text.contains("Acme Health"),
        "no values in the trail"
    );
}
on_both_backends!(
    a_bot_verifies_a_prior_authorization_end_to_end,
    call_session
);
