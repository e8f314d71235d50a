//! Telephony end to end against a local stand-in of a Twilio-compatible
//! voice API: an administrator sets the organization's account, staff
//! place the payer call of a task a bot claimed, the provider's signed
//! status callbacks move the task, the bot escalates to the supervisor
//! (whose number it never sees), the recording is fetched, sealed, stored
//! with the task and deleted at the provider. And the attacks: unsigned,
//! badly signed, replayed and misaddressed callbacks, another
//! organization's token, a provider that is down or hangs.

use std::time::{Duration, Instant};

use carapace_audit::SecurityEventKind;
use carapace_auth::Role;
use carapace_testkit::voice::{Mode, VoiceApi, signed_callback, wav};
use serde_json::{Value, json};

use crate::support::{Backend, Org, TestApp, problem, send, spawn_app_with};

mod placing;
mod voicemail;

const PUBLIC: &str = "https://carapace.clinic.example";
const TOKEN: &str = "org-one-auth-token-0123456789";
const ACCOUNT: &str = "ACtest0000000000000000000000000001";

async fn app(backend: Backend, test: &str, voice: &VoiceApi) -> Option<TestApp> {
    let base = voice.base.clone();
    spawn_app_with(backend, test, move |s| {
        s.voice_url = Some(base);
        s.voice_allow_loopback = true;
        s.public_url = Some(PUBLIC.to_owned());
        // Recordings are transcribed under the assistant's agreements.
        s.speech_provider = "local".into();
        s.ai_baa_signed = true;
    })
    .await
}

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(body)).await
}

async fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(app.http.put(app.url(path)).bearer_auth(token).json(body)).await
}

/// A bot's service key (role `service`).
async fn bot_key(app: &TestApp, admin: &str) -> String {
    let res = post(
        app,
        admin,
        "/api/v1/service-keys",
        &json!({"name": "voice bot", "roles": ["service"]}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap_or_default();
    body["key"].as_str().unwrap_or_default().to_owned()
}

/// A task created by staff and claimed by `bot`: its id.
async fn claimed_task(app: &TestApp, admin: &str, staff: &str, bot: &str) -> String {
    let p = app.new_patient(admin, "Called").await;
    let created = post(app, staff, "/api/v1/verification-tasks", &json!({"patient_id": p, "payer_name": "Acme Health", "payer_phone": "+1 800 555 0199", "plan": "Gold PPO", "procedure_codes": ["99213"]})).await;
    assert_eq!(created.status(), 201);
    let task: Value = created.json().await.unwrap_or_default();
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    let claimed = post(
        app,
        bot,
        &format!("/api/v1/verification-tasks/{id}/claim"),
        &json!({}),
    )
    .await;
    assert_eq!(claimed.status(), 204);
    id
}

async fn set_account(app: &TestApp, admin: &str, account: &str, token: &str) {
    let res = put(
        app,
        admin,
        "/api/v1/organization/telephony",
        &json!({"account_sid": account, "auth_token": token, "caller_number": "+16175550100", "bot_stream_url": "wss://bot.clinic.example/media"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap_or_default();
    assert!(!text.contains(token), "the token is never shown");
}

/// The provider's status callback for `call` of `org`, signed with
/// `token` over the public URL.
async fn status(app: &TestApp, org: &Org, token: &str, call: &str, state: &str) -> u16 {
    let path = format!("/api/v1/telephony/{}/status", org.id.as_uuid());
    signed_callback(
        &app.http,
        &app.url(&path),
        &format!("{PUBLIC}{path}"),
        token,
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", call),
            ("CallStatus", state),
            ("To", "+18005550199"),
        ],
    )
    .await
    .status()
    .as_u16()
}

async fn recording(app: &TestApp, org: &Org, call: &str, rec: &str) -> u16 {
    let path = format!("/api/v1/telephony/{}/recording", org.id.as_uuid());
    signed_callback(
        &app.http,
        &app.url(&path),
        &format!("{PUBLIC}{path}"),
        TOKEN,
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", call),
            ("RecordingSid", rec),
            ("RecordingStatus", "completed"),
            ("RecordingDuration", "3"),
            ("RecordingUrl", "http://169.254.169.254/latest/meta-data"),
        ],
    )
    .await
    .status()
    .as_u16()
}

async fn task_status(app: &TestApp, staff: &str, id: &str) -> String {
    let task: Value = app
        .get(&format!("/api/v1/verification-tasks/{id}"), staff)
        .await
        .json()
        .await
        .unwrap_or_default();
    task["status"].as_str().unwrap_or_default().to_owned()
}

async fn a_prior_authorization_call(backend: Backend, test: &str) {
    let voice = VoiceApi::start();
    voice.account(ACCOUNT, TOKEN);
    let Some(app) = app(backend, test, &voice).await else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let bot = bot_key(&app, &admin).await;
    let id = claimed_task(&app, &admin, &staff, &bot).await;
    let base = format!("/api/v1/verification-tasks/{id}");

    // No account yet: nothing is placed.
    let early = post(&app, &staff, &format!("{base}/call"), &json!({})).await;
    assert_eq!(
        problem(early, 409).await["code"],
        "telephony_not_configured"
    );
    set_account(&app, &admin, ACCOUNT, TOKEN).await;
    let shown: Value = app
        .get("/api/v1/organization/telephony", &admin)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(shown["account_sid"], ACCOUNT);
    assert_eq!(shown["auth_token_set"], true);
    assert!(!shown.to_string().contains(TOKEN));
    let baa = put(
        &app,
        &admin,
        "/api/v1/organization/settings",
        &json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": true}),
    )
    .await;
    assert_eq!(baa.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let supervisor = put(
        &app,
        &admin,
        "/api/v1/organization/verification-settings",
        &json!({"supervisor_phone": "+1 617 555 0123"}),
    )
    .await;
    assert_eq!(supervisor.status(), 200);

    // A bot may not place calls; staff do. The provider is asked to call
    // the payer from the organization's number and stream to the bot.
    let by_bot = post(&app, &bot, &format!("{base}/call"), &json!({})).await;
    problem(by_bot, 403).await;
    let placed = post(&app, &staff, &format!("{base}/call"), &json!({})).await;
    assert_eq!(placed.status(), 201);
    let call: Value = placed.json().await.unwrap_or_default();
    let call = call["call_sid"].as_str().unwrap_or_default().to_owned();
    let sent = voice.placed();
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.sid, call);
    assert_eq!(sent.get("To"), Some("+1 800 555 0199"));
    assert_eq!(sent.get("From"), Some("+16175550100"));
    let twiml = sent.get("Twiml").unwrap_or_default();
    assert!(
        twiml.contains("<Stream url=\"wss://bot.clinic.example/media\">")
            && twiml.contains(&format!("value=\"{id}\"")),
        "{twiml}"
    );
    assert!(!twiml.contains("Called"), "no patient data in the script");
    let org_path = format!("{PUBLIC}/api/v1/telephony/{}", org.id.as_uuid());
    assert_eq!(
        sent.get("StatusCallback"),
        Some(format!("{org_path}/status").as_str())
    );
    assert_eq!(
        sent.get("RecordingStatusCallback"),
        Some(format!("{org_path}/recording").as_str())
    );
    let twice = post(&app, &staff, &format!("{base}/call"), &json!({})).await;
    assert_eq!(problem(twice, 409).await["code"], "call_in_progress");

    // Not yet on the phone: no escalation.
    let soon = post(&app, &bot, &format!("{base}/escalate"), &json!({})).await;
    assert_eq!(problem(soon, 409).await["code"], "invalid_transition");

    // The provider's callbacks move the task.
    assert_eq!(status(&app, &org, TOKEN, &call, "ringing").await, 204);
    assert_eq!(task_status(&app, &staff, &id).await, "claimed");
    assert_eq!(status(&app, &org, TOKEN, &call, "in-progress").await, 204);
    assert_eq!(task_status(&app, &staff, &id).await, "calling");

    // The bot escalates: the provider transfers the call to the
    // supervisor; the bot's answer holds no number.
    let escalated = post(&app, &bot, &format!("{base}/escalate"), &json!({})).await;
    assert_eq!(escalated.status(), 204);
    assert!(escalated.text().await.unwrap_or_default().is_empty());
    let redirects = voice.redirects();
    assert_eq!(redirects.len(), 1);
    assert_eq!(redirects[0].0, call);
    assert!(
        redirects[0].1.contains("<Dial>+1 617 555 0123</Dial>"),
        "{}",
        redirects[0].1
    );

    // The bot completes; the call's end does not reopen or fail it.
    let done = post(
        &app,
        &bot,
        &format!("{base}/progress"),
        &json!({"status": "completed", "reference_number": "PA-1234"}),
    )
    .await;
    assert_eq!(done.status(), 204);
    assert_eq!(status(&app, &org, TOKEN, &call, "completed").await, 204);
    assert_eq!(task_status(&app, &staff, &id).await, "completed");

    // The recording: fetched from the provider's own API (never the URL
    // the callback names), stored sealed, deleted at the provider.
    let audio = wav(3);
    voice.put_recording("REtest01", audio.clone());
    assert_eq!(recording(&app, &org, &call, "REtest01").await, 204);
    assert_eq!(voice.deleted(), vec!["REtest01".to_owned()]);
    assert!(!voice.holds("REtest01"));
    let listed: Value = app
        .get(&format!("{base}/recordings"), &staff)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(listed[0]["recording_sid"], "REtest01");
    assert_eq!(listed[0]["call_sid"], call.as_str());
    assert_eq!(listed[0]["duration_seconds"], 3);
    assert!(listed[0]["deleted_at_provider"].is_string());
    assert_eq!(
        listed[0]["transcript"],
        "(local transcription) 3.000 seconds of audio"
    );
    let played = app
        .get(&format!("{base}/recordings/REtest01"), &staff)
        .await;
    assert_eq!(played.status(), 200);
    assert_eq!(
        played
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("audio/wav")
    );
    assert_eq!(played.bytes().await.unwrap_or_default().to_vec(), audio);
    let by_bot = app.get(&format!("{base}/recordings/REtest01"), &bot).await;
    problem(by_bot, 403).await;

    // The trail: each step with its call id, as whoever took it.
    let trail: Value = app
        .get(
            &format!("/api/v1/audit-events?resource_id={id}&limit=100"),
            &app.token(&org, Role::Compliance),
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    let actions: Vec<(String, String)> = trail["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (action, actor) in [
        ("verification.call", "front-desk"),
        ("verification.call_status", "system:telephony"),
        ("verification.escalate", "service:"),
        ("verification.recording", "system:telephony"),
        ("verification.recording_deleted", "system:telephony"),
        ("verification.recording_play", "front-desk"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, who)| a == action && who.starts_with(actor)),
            "{action} by {actor} in {actions:?}"
        );
    }
    app.stop().await;
    // Neither the payer's nor the supervisor's number reaches the logs.
    let logs = crate::support::captured_log_text();
    for number in ["800 555 0199", "8005550199", "617 555 0123", "6175550123"] {
        assert!(!logs.contains(number), "{number} appears in the logs");
    }
}

#[tokio::test]
async fn a_prior_authorization_call_with_escalation_and_its_recording_sqlite() {
    a_prior_authorization_call(Backend::Sqlite, "telephony_call::sqlite").await;
}

#[tokio::test]
async fn a_prior_authorization_call_with_escalation_and_its_recording_postgres() {
    a_prior_authorization_call(Backend::Postgres, "telephony_call::postgres").await;
}

async fn forged_callbacks(backend: Backend, test: &str) {
    let voice = VoiceApi::start();
    voice.account(ACCOUNT, TOKEN);
    let Some(app) = app(backend, test, &voice).await else {
        return;
    };
    let org = app.org().await;
    let other = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let bot = bot_key(&app, &admin).await;
    set_account(&app, &admin, ACCOUNT, TOKEN).await;
    let other_token = "other-org-auth-token-987654321";
    set_account(
        &app,
        &app.token(&other, Role::Admin),
        "ACother",
        other_token,
    )
    .await;
    let id = claimed_task(&app, &admin, &staff, &bot).await;
    let placed = post(
        &app,
        &staff,
        &format!("/api/v1/verification-tasks/{id}/call"),
        &json!({}),
    )
    .await;
    let call: Value = placed.json().await.unwrap_or_default();
    let call = call["call_sid"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/telephony/{}/status", org.id.as_uuid());
    let rejected = || app.events.of(SecurityEventKind::WebhookRejected).len();
    let before = rejected();

    // Unsigned.
    let unsigned = send(
        app.http
            .post(app.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("CallSid={call}&CallStatus=busy")),
    )
    .await;
    problem(unsigned, 403).await;
    // Signed with another organization's token, or over the URL the
    // request's Host header names instead of the configured public URL.
    assert_eq!(status(&app, &org, other_token, &call, "busy").await, 403);
    let host_url = signed_callback(
        &app.http,
        &app.url(&path),
        &app.url(&path),
        TOKEN,
        &[("CallSid", &call), ("CallStatus", "busy")],
    )
    .await;
    problem(host_url, 403).await;
    // A good signature with a parameter changed on the way.
    let path_q = format!("{path}?x=1");
    let moved = signed_callback(
        &app.http,
        &app.url(&path_q),
        &format!("{PUBLIC}{path}"),
        TOKEN,
        &[("CallSid", &call), ("CallStatus", "busy")],
    )
    .await;
    problem(moved, 403).await;
    // This organization's callback sent to the other organization's route
    // (its own token there), and to an organization that does not exist.
    let other_path = format!("/api/v1/telephony/{}/status", other.id.as_uuid());
    let crossed = signed_callback(
        &app.http,
        &app.url(&other_path),
        &format!("{PUBLIC}{path}"),
        TOKEN,
        &[("CallSid", &call), ("CallStatus", "busy")],
    )
    .await;
    problem(crossed, 403).await;
    // The other organization, with its own valid signature, cannot move a
    // call this organization placed.
    let mine_there = signed_callback(
        &app.http,
        &app.url(&other_path),
        &format!("{PUBLIC}{other_path}"),
        other_token,
        &[("CallSid", &call), ("CallStatus", "busy")],
    )
    .await;
    problem(mine_there, 404).await;
    let nobody = format!("/api/v1/telephony/{}/status", uuid::Uuid::new_v4());
    let ghost = signed_callback(
        &app.http,
        &app.url(&nobody),
        &format!("{PUBLIC}{nobody}"),
        TOKEN,
        &[("CallSid", &call), ("CallStatus", "busy")],
    )
    .await;
    problem(ghost, 403).await;
    assert_eq!(
        task_status(&app, &staff, &id).await,
        "claimed",
        "nothing moved"
    );

    // Processed once, even when the same delivery arrives twice at once;
    // the same event again later is a replay.
    let (a, b) = tokio::join!(
        status(&app, &org, TOKEN, &call, "in-progress"),
        status(&app, &org, TOKEN, &call, "in-progress")
    );
    let mut answers = [a, b];
    answers.sort_unstable();
    assert_eq!(
        answers,
        [204, 403],
        "one of two racing deliveries is processed"
    );
    assert_eq!(status(&app, &org, TOKEN, &call, "in-progress").await, 403);
    assert_eq!(task_status(&app, &staff, &id).await, "calling");
    assert_eq!(rejected() - before, 8, "each refusal is a security event");
    let trail: Value = app
        .get(
            &format!(
                "/api/v1/audit-events?action=verification.call_status&resource_id={id}&limit=10"
            ),
            &app.token(&org, Role::Compliance),
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        trail["items"].as_array().map(Vec::len),
        Some(1),
        "the task moved once: {trail}"
    );

    // A recording callback pointing at an internal address: Carapace
    // fetches from the provider's own API only, so the address is never
    // called; an unknown recording there is a provider failure (retried),
    // and nothing is stored.
    assert_eq!(recording(&app, &org, &call, "REmissing").await, 503);
    // The provider down, then back: the callback is retried, not a replay.
    voice.put_recording("REretry", wav(1));
    voice.set_mode(Mode::Down);
    assert_eq!(recording(&app, &org, &call, "REretry").await, 503);
    voice.set_mode(Mode::Up);
    assert_eq!(recording(&app, &org, &call, "REretry").await, 204);
    assert_eq!(recording(&app, &org, &call, "REretry").await, 403);
    app.stop().await;
}

#[tokio::test]
async fn forged_replayed_and_misaddressed_callbacks_are_refused_sqlite() {
    forged_callbacks(Backend::Sqlite, "telephony_forged::sqlite").await;
}

#[tokio::test]
async fn forged_replayed_and_misaddressed_callbacks_are_refused_postgres() {
    forged_callbacks(Backend::Postgres, "telephony_forged::postgres").await;
}

#[tokio::test]
async fn the_local_provider_places_no_call_but_keeps_every_rule() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "telephony_local", |s| {
        s.voice_url = Some("local".into());
        s.public_url = Some(PUBLIC.to_owned());
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let bot = bot_key(&app, &admin).await;
    set_account(&app, &admin, ACCOUNT, TOKEN).await;
    let id = claimed_task(&app, &admin, &staff, &bot).await;
    let placed = post(
        &app,
        &staff,
        &format!("/api/v1/verification-tasks/{id}/call"),
        &json!({}),
    )
    .await;
    assert_eq!(placed.status(), 201);
    let call: Value = placed.json().await.unwrap_or_default();
    let call = call["call_sid"].as_str().unwrap_or_default().to_owned();
    // Its callbacks are checked as a real provider's are.
    assert_eq!(
        status(&app, &org, "not-the-token-0123456789", &call, "in-progress").await,
        403
    );
    assert_eq!(status(&app, &org, TOKEN, &call, "in-progress").await, 204);
    assert_eq!(task_status(&app, &staff, &id).await, "calling");
    // Its recording is a second of silence, stored like any other.
    assert_eq!(recording(&app, &org, &call, "RElocal").await, 204);
    app.stop().await;
}
