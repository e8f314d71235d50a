use super::*;

async fn inbound(app: &TestApp, org: &Org, call: &str, from: &str) -> reqwest::Response {
    let path = format!("/api/v1/telephony/{}/voice", org.id.as_uuid());
    signed_callback(
        &app.http,
        &app.url(&path),
        &format!("{PUBLIC}{path}"),
        TOKEN,
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", call),
            ("From", from),
            ("To", "+16175550100"),
            ("CallStatus", "ringing"),
        ],
    )
    .await
}

async fn voicemail(app: &TestApp, org: &Org, call: &str, rec: &str) -> u16 {
    let path = format!("/api/v1/telephony/{}/voicemail", org.id.as_uuid());
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
            ("RecordingDuration", "2"),
        ],
    )
    .await
    .status()
    .as_u16()
}

async fn a_voicemail(backend: Backend, test: &str) {
    let voice = VoiceApi::start();
    voice.account(ACCOUNT, TOKEN);
    let base = voice.base.clone();
    let Some(app) = spawn_app_with(backend, test, move |s| {
        s.voice_url = Some(base);
        s.voice_allow_loopback = true;
        s.public_url = Some(PUBLIC.to_owned());
        s.speech_provider = "local".into();
        s.ai_baa_signed = true;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    set_account(&app, &admin, ACCOUNT, TOKEN).await;
    let baa = put(
        &app,
        &admin,
        "/api/v1/organization/settings",
        &json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": true}),
    )
    .await;
    assert_eq!(baa.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut body = crate::support::patient("Caller");
    body["phone"] = json!("+1 (617) 555-0142");
    let created = app.create_patient(&admin, &body).await;
    assert_eq!(created.status(), 201);
    let patient: Value = created.json().await.unwrap_or_default();
    let patient = patient["id"].as_str().unwrap_or_default().to_owned();

    // The call is answered with the greeting and a recording, nothing
    // about any patient; the same call again is a replay.
    let answered = inbound(&app, &org, "CAvm0001", "+16175550142").await;
    assert_eq!(answered.status(), 200);
    assert_eq!(
        answered
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/xml")
    );
    let twiml = answered.text().await.unwrap_or_default();
    let callback = format!(
        "recordingStatusCallback=\"{PUBLIC}/api/v1/telephony/{}/voicemail\"",
        org.id.as_uuid()
    );
    assert!(
        twiml.contains("<Record ") && twiml.contains(&callback),
        "{twiml}"
    );
    assert!(
        !twiml.contains("Caller") && !twiml.contains("0142"),
        "{twiml}"
    );
    assert_eq!(
        inbound(&app, &org, "CAvm0001", "+16175550142")
            .await
            .status(),
        403
    );

    // The message: fetched, sealed, transcribed, matched by the caller's
    // number however it was typed, deleted at the provider.
    voice.put_recording("REvm0001", wav(2));
    assert_eq!(voicemail(&app, &org, "CAvm0001", "REvm0001").await, 204);
    assert_eq!(voicemail(&app, &org, "CAvm0001", "REvm0001").await, 403);
    assert_eq!(voice.deleted(), vec!["REvm0001".to_owned()]);
    assert_eq!(voicemail(&app, &org, "CAnosuchcall", "REvm0009").await, 404);

    // A stranger's call goes to the organization's inbox.
    assert_eq!(
        inbound(&app, &org, "CAvm0002", "+15550009999")
            .await
            .status(),
        200
    );

    let viewer = app.token_as(&org, Role::Viewer, "viewer");
    problem(app.get("/api/v1/voicemails", &viewer).await, 403).await;
    let listed: Value = app
        .get("/api/v1/voicemails", &staff)
        .await
        .json()
        .await
        .unwrap_or_default();
    let items = listed.as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{listed}");
    let stranger = &items[0];
    assert_eq!(stranger["caller"], "+15550009999");
    assert!(stranger["patient_id"].is_null() && stranger["duration_seconds"].is_null());
    let known = &items[1];
    assert_eq!(known["caller"], "+16175550142");
    assert_eq!(known["patient_id"], patient.as_str());
    assert_eq!(known["duration_seconds"], 2);
    assert_eq!(
        known["transcript"],
        "(local transcription) 2.000 seconds of audio"
    );
    assert!(known["deleted_at_provider"].is_string());
    let id = known["id"].as_str().unwrap_or_default();
    let played = app
        .get(&format!("/api/v1/voicemails/{id}/audio"), &staff)
        .await;
    assert_eq!(played.status(), 200);
    assert_eq!(played.bytes().await.unwrap_or_default().to_vec(), wav(2));
    let unrecorded = stranger["id"].as_str().unwrap_or_default();
    problem(
        app.get(&format!("/api/v1/voicemails/{unrecorded}/audio"), &staff)
            .await,
        404,
    )
    .await;
    // Another organization sees none of it.
    let other = app.org().await;
    let theirs: Value = app
        .get("/api/v1/voicemails", &app.token(&other, Role::Admin))
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(theirs, json!([]));
    problem(
        app.get(
            &format!("/api/v1/voicemails/{id}"),
            &app.token(&other, Role::Admin),
        )
        .await,
        404,
    )
    .await;

    let trail: Value = app
        .get(
            &format!("/api/v1/audit-events?resource_id={id}&limit=100"),
            &app.token(&org, Role::Compliance),
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    let actions: Vec<String> = trail["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    for action in [
        "voicemail.received",
        "voicemail.recorded",
        "voicemail.recording_deleted",
        "voicemail.play",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    app.stop().await;
    // Callers' numbers never reach the logs.
    let logs = crate::support::captured_log_text();
    assert!(logs.contains("request completed"), "logs were captured");
    for number in ["+16175550142", "6175550142", "+15550009999", "5550009999"] {
        assert!(!logs.contains(number), "{number} appears in the logs");
    }
}

#[tokio::test]
async fn a_voicemail_reaches_the_callers_patient_or_the_inbox_sqlite() {
    a_voicemail(Backend::Sqlite, "telephony_voicemail::sqlite").await;
}

#[tokio::test]
async fn a_voicemail_reaches_the_callers_patient_or_the_inbox_postgres() {
    a_voicemail(Backend::Postgres, "telephony_voicemail::postgres").await;
}
