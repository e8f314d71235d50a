//! `/api/v1/voice/…`: speech under the assistant's agreements; audio
//! recognised by its bytes and bounded; espeak-ng speaks real audio; each
//! use recorded before anything leaves.

use carapace_auth::Role;
use carapace_testkit::voice::wav;
use serde_json::{Value, json};

use crate::support::{Backend, Org, TestApp, problem, send, spawn_app_with};

async fn org_baa(app: &TestApp, org: &Org) {
    let res = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(app.token(org, Role::Admin))
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": true})),
    )
    .await;
    assert_eq!(res.status(), 200);
    // Organization settings are remembered for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

async fn upload(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/voice/transcriptions"))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

async fn speak(app: &TestApp, token: &str, text: &str) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/voice/speech"))
            .bearer_auth(token)
            .json(&json!({"text": text})),
    )
    .await
}

#[tokio::test]
async fn speech_needs_both_agreements_and_real_audio() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "speech_no_baa", |s| {
        s.speech_provider = "local".into();
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let refused = problem(upload(&app, &ada, "audio/wav", wav(1)).await, 503).await;
    assert_eq!(refused["code"], "deployment_baa_missing");
    app.stop().await;

    let Some(app) = spawn_app_with(Backend::Sqlite, "speech_baa", |s| {
        s.speech_provider = "local".into();
        s.ai_baa_signed = true;
        // Speech counts against the `ai` class; this test makes many calls.
        s.rate_limit_ai_per_minute = 10_000;
        s.rate_limit_ai_burst = 1_000;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let refused = problem(speak(&app, &ada, "hello").await, 403).await;
    assert_eq!(refused["code"], "org_baa_missing");
    org_baa(&app, &org).await;
    let viewer = app.token_as(&org, Role::Viewer, "viewer");
    problem(upload(&app, &viewer, "audio/wav", wav(1)).await, 403).await;

    // Sniffed, not trusted: a WAV declared as anything is a WAV; anything
    // else declared as a WAV is not.
    let heard = upload(&app, &ada, "application/octet-stream", wav(2)).await;
    assert_eq!(heard.status(), 200);
    let heard: Value = heard.json().await.unwrap_or_default();
    assert_eq!(
        heard["text"],
        "(local transcription) 2.000 seconds of audio"
    );
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    problem(upload(&app, &ada, "audio/wav", png).await, 415).await;
    let mut lying = wav(1);
    lying[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    problem(upload(&app, &ada, "audio/wav", lying).await, 415).await;
    // Bounded in length and size.
    problem(upload(&app, &ada, "audio/wav", wav(301)).await, 422).await;
    problem(
        upload(&app, &ada, "audio/wav", vec![0; 11 * 1024 * 1024]).await,
        413,
    )
    .await;
    problem(speak(&app, &ada, &"a".repeat(1001)).await, 422).await;

    // The disclosures are in the trail, naming the provider.
    let trail: Value = app
        .get(
            "/api/v1/audit-events?action=speech.transcribe&limit=10",
            &app.token(&org, Role::Compliance),
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    let items = trail["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{trail}");
    assert!(
        items[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("local:stand-in"))
    );

    // espeak-ng speaks: real audio of a plausible length.
    let spoken_ok = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !spoken_ok {
        carapace_testkit::skip("speech: text to speech", "espeak-ng is not installed");
        app.stop().await;
        return;
    }
    let spoken = speak(&app, &ada, "Your appointment is on Tuesday at nine.").await;
    assert_eq!(spoken.status(), 200);
    assert_eq!(
        spoken
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("audio/wav")
    );
    let bytes = spoken.bytes().await.unwrap_or_default().to_vec();
    let (_, millis) = carapace_clinical::speech::sniff(&bytes).unwrap_or_else(|| panic!("WAV"));
    assert!((1000..10_000).contains(&millis), "{millis} ms");
    app.stop().await;
}
