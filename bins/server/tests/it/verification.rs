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

/// The keys of a JSON object, sorted.
fn keys_of(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

async fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(app.http.put(app.url(path)).bearer_auth(token).json(body)).await
}

/// Seed 001 kept the supervisor's number in the patient's data and sent it
/// to the bot on every call. Here it is an organization setting, sealed,
/// set by an administrator, and offered to the bot only while its task is
/// `calling`: not in the queue, not before the call, not after it, not to
/// another organization's bot, and not to staff.
async fn supervisor_only_while_calling(app: &TestApp) {
    const SETTINGS: &str = "/api/v1/organization/verification-settings";
    let org = app.org().await;
    let other = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let (bot, _) = bot_key(app, &admin).await;
    let (foreign_bot, _) = bot_key(app, &app.token(&other, Role::Admin)).await;

    // Only administrators set or read it; bad numbers change nothing.
    let none: Value = app
        .get(SETTINGS, &admin)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(none, json!({"supervisor_phone": null}));
    for token in [&staff, &bot] {
        let refused = put(
            app,
            token,
            SETTINGS,
            &json!({"supervisor_phone": "+1 617 555 0123"}),
        )
        .await;
        problem(refused, 403).await;
        problem(app.get(SETTINGS, token).await, 403).await;
    }
    let set = put(
        app,
        &admin,
        SETTINGS,
        &json!({"supervisor_phone": " +1 617 555 0123 "}),
    )
    .await;
    assert_eq!(set.status(), 200);
    for bad in [
        json!({"supervisor_phone": "call the front desk"}),
        json!({"supervisor_phone": "1".repeat(33)}),
        json!({"supervisor_phone": "+1 617 555 0123", "extra": true}),
    ] {
        let refused = put(app, &admin, SETTINGS, &bad).await;
        assert!(matches!(refused.status().as_u16(), 400 | 422), "{bad}");
    }
    let kept: Value = app
        .get(SETTINGS, &admin)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(kept, json!({"supervisor_phone": "+1 617 555 0123"}));
    let theirs = put(
        app,
        &app.token(&other, Role::Admin),
        SETTINGS,
        &json!({"supervisor_phone": "+44 20 7946 0000"}),
    )
    .await;
    assert_eq!(theirs.status(), 200);

    let p = app.new_patient(&admin, "Escalated").await;
    let created = post(app, &staff, "/api/v1/verification-tasks", &json!({"patient_id": p, "payer_name": "Acme Health", "payer_phone": "+1 800 555 0199", "plan": "Gold PPO", "procedure_codes": ["99213"]})).await;
    let task: Value = created.json().await.unwrap_or_default();
    let base = format!(
        "/api/v1/verification-tasks/{}",
        task["id"].as_str().unwrap_or_default()
    );
    let view = |token: String| {
        let path = format!("{base}/bot-view");
        async move {
            let res = app.get(&path, &token).await;
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or_default())
        }
    };
    let queue = app
        .get("/api/v1/verification-tasks/queue", &bot)
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(!queue.contains("555 0123"), "{queue}");
    assert_eq!(
        post(app, &bot, &format!("{base}/claim"), &json!({}))
            .await
            .status(),
        204
    );

    // Claimed, not yet calling: no supervisor.
    let (status, claimed) = view(bot.clone()).await;
    assert_eq!(status, 200);
    assert!(
        !keys_of(&claimed).contains(&"supervisor_phone".to_owned()),
        "{claimed}"
    );
    // Calling: the organization's own number, and only to its bot.
    let calling = post(
        app,
        &bot,
        &format!("{base}/progress"),
        &json!({"status": "calling"}),
    )
    .await;
    assert_eq!(calling.status(), 204);
    let (_, on_call) = view(bot.clone()).await;
    assert_eq!(on_call["supervisor_phone"], "+1 617 555 0123");
    let (status, foreign) = view(foreign_bot.clone()).await;
    assert_eq!(status, 404);
    assert!(!foreign.to_string().contains("555 0123"), "{foreign}");
    // Staff see the task, never the supervisor in it.
    let staff_view = app
        .get(&base, &staff)
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(!staff_view.contains("555 0123"), "{staff_view}");
    // Removed by the administrator: gone from the next view at once.
    assert_eq!(
        put(app, &admin, SETTINGS, &json!({"supervisor_phone": null}))
            .await
            .status(),
        200
    );
    let (_, removed) = view(bot.clone()).await;
    assert!(
        !keys_of(&removed).contains(&"supervisor_phone".to_owned()),
        "{removed}"
    );
    assert_eq!(
        put(
            app,
            &admin,
            SETTINGS,
            &json!({"supervisor_phone": "+1 617 555 0123"})
        )
        .await
        .status(),
        200
    );
    // The call is over: nothing to escalate.
    let done = post(
        app,
        &bot,
        &format!("{base}/progress"),
        &json!({"status": "completed", "reference_number": "PA-1"}),
    )
    .await;
    assert_eq!(done.status(), 204);
    let (_, after) = view(bot.clone()).await;
    assert!(!after.to_string().contains("555 0123"), "{after}");

    // The trail names the disclosure exactly when it happened.
    let compliance = app.token_as(&org, Role::Compliance, "compliance-officer");
    let trail: Value = app
        .get("/api/v1/audit-events?limit=500", &compliance)
        .await
        .json()
        .await
        .unwrap_or_default();
    let views: Vec<bool> = trail["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "verification.bot_view" && e["outcome"] == "allowed")
        .map(|e| e["phi_fields"].to_string().contains("supervisor_phone"))
        .collect();
    assert_eq!(views.iter().filter(|d| **d).count(), 1, "{views:?}");
    assert!(
        !trail.to_string().contains("617 555"),
        "no value in the trail"
    );
}
on_both_backends!(
    a_bot_is_offered_the_supervisor_only_while_calling,
    supervisor_only_while_calling
);
