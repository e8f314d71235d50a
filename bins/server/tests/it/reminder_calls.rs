//! Reminder calls against the voice stand-in: the deliverer calls the
//! patient (only the time is said), the provider posts the key pressed,
//! signed, to the reminder's answer URL: 1 confirms, 2 cancels the
//! appointment (as the patient, by phone), 3 reaches the front desk; once
//! each. An opted-out phone is not called.

use carapace_auth::Role;
use carapace_server::settings::Settings;
use carapace_testkit::voice::{VoiceApi, signed_callback};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::support::{Backend, TestApp, problem, send, settings_with, spawn_app_with};

const PUBLIC: &str = "https://carapace.clinic.example";
const TOKEN: &str = "org-reminder-token-0123456789";
const ACCOUNT: &str = "ACreminders";

fn voice_settings(s: &mut Settings, base: String) {
    s.voice_url = Some(base);
    s.voice_allow_loopback = true;
    s.public_url = Some(PUBLIC.to_owned());
}

async fn book(app: &TestApp, token: &str, patient: &str, start: OffsetDateTime) -> String {
    let text = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let res = send(
        app.http
            .post(app.url("/api/v1/appointments"))
            .bearer_auth(token)
            .json(&json!({
                "patient_id": patient,
                "practitioner": "clinician-ada",
                "start": text(start),
                "end": text(start + Duration::minutes(30)),
                "time_zone": "America/New_York",
                "reason": "Vexillary tremor follow-up",
            })),
    )
    .await;
    assert_eq!(res.status(), 201);
    let made: Value = res.json().await.unwrap_or_default();
    made["id"].as_str().unwrap_or_default().to_owned()
}

/// Runs the reminder deliverer of the app's settings at `at`.
async fn deliver(app: &TestApp, settings: &Settings, at: OffsetDateTime) {
    let deliverer = carapace_server::server::reminder_deliverer(&settings.config(), &app.db)
        .unwrap_or_else(|e| panic!("{e}"));
    deliverer
        .run_once(at)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The answer URL of the menu in `twiml`.
fn action(twiml: &str) -> String {
    let start = twiml.find("action=\"").map(|i| i + 8).unwrap_or_default();
    let end = twiml[start..].find('"').map_or(start, |e| start + e);
    twiml[start..end].replace("&amp;", "&")
}

async fn press(app: &TestApp, url: &str, digits: &str) -> reqwest::Response {
    let path = url.strip_prefix(PUBLIC).unwrap_or_default();
    signed_callback(
        &app.http,
        &app.url(path),
        url,
        TOKEN,
        &[
            ("CallSid", "CAreminder"),
            ("Digits", digits),
            ("AccountSid", ACCOUNT),
        ],
    )
    .await
}

#[tokio::test]
async fn a_reminder_call_is_answered_with_one_key() {
    let voice = VoiceApi::start();
    voice.account(ACCOUNT, TOKEN);
    let base = voice.base.clone();
    let Some(app) = spawn_app_with(Backend::Sqlite, "reminder_calls", {
        let base = base.clone();
        move |s| voice_settings(s, base)
    })
    .await
    else {
        return;
    };
    let mut settings = settings_with(format!(
        "sqlite://{}/carapace.db",
        app.data_dir
            .parent()
            .unwrap_or_else(|| panic!("dir"))
            .display()
    ));
    settings.data_dir = app.data_dir.clone();
    voice_settings(&mut settings, base);

    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let account = send(
        app.http
            .put(app.url("/api/v1/organization/telephony"))
            .bearer_auth(&admin)
            .json(&json!({
                "account_sid": ACCOUNT, "auth_token": TOKEN, "caller_number": "+16175550100",
                "bot_stream_url": "wss://bot.example/media", "front_desk_number": "+16175550111",
                "call_from_hour": 0, "call_until_hour": 24,
            })),
    )
    .await;
    assert_eq!(account.status(), 200);
    let p = app.new_patient(&ada, "Ringer").await;
    let now = OffsetDateTime::now_utc();
    let starts = [
        now + Duration::days(3),
        now + Duration::days(4),
        now + Duration::days(5),
    ];
    let mut ids = Vec::new();
    for start in starts {
        ids.push(book(&app, &ada, &p, start).await);
    }

    // While the kill switch is on, no reminder reaches a patient: they
    // wait for its release.
    let switch = carapace_infra::kill_switch::SeaKillSwitch::new(app.db.clone());
    let turn = |engaged: bool| carapace_infra::kill_switch::KillSwitchChange {
        engaged,
        reason: Some("suspected breach".to_owned()),
        by: carapace_tenancy::SubjectId::parse("system:cli").unwrap_or_else(|e| panic!("{e}")),
        origin: carapace_audit::Origin::default(),
    };
    switch
        .set(&turn(true))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deliverer = carapace_server::server::reminder_deliverer(&settings.config(), &app.db)
        .unwrap_or_else(|e| panic!("{e}"));
    // A pass of the serving instance's job at the first reminders' time.
    let pass = async || {
        carapace_server::server::remind_unless_suspended(
            &deliverer,
            &switch,
            starts[2] - Duration::hours(23),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let paused = pass().await;
    assert_eq!(paused, carapace_infra::ReminderReport::default());
    assert!(voice.placed().is_empty(), "no call while the switch is on");
    switch
        .set(&turn(false))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The serving instance sees the release within a second.
    for _ in 0..30 {
        let res = app
            .get(&format!("/api/v1/appointments/{}", ids[0]), &ada)
            .await;
        if res.status() != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Each appointment's call rings at its first reminder, 24 hours ahead.
    let resumed = pass().await;
    assert!(resumed.sent >= 3, "{resumed:?}");
    let placed = voice.placed();
    assert_eq!(placed.len(), 3, "one call per appointment");
    let twimls: Vec<String> = placed
        .iter()
        .map(|c| c.get("Twiml").unwrap_or_default().to_owned())
        .collect();
    for (call, twiml) in placed.iter().zip(&twimls) {
        assert_eq!(call.get("To"), Some("+1 555 010 0100"));
        assert!(
            call.get("Record").is_none(),
            "reminder calls are not recorded"
        );
        assert!(twiml.contains("<Gather numDigits=\"1\""), "{twiml}");
        assert!(
            twiml.contains("Press 1 to confirm, 2 to cancel, or 3"),
            "{twiml}"
        );
        for secret in ["Ringer", "Roe", "Vexillary", "clinician-ada"] {
            assert!(!twiml.contains(secret), "{secret} in {twiml}");
        }
    }
    // Which call is which appointment: the order they were placed in is
    // the order their reminders fell due, earliest first.
    let urls: Vec<String> = twimls.iter().map(|t| action(t)).collect();
    let org_part = format!("{PUBLIC}/api/v1/telephony/{}/reminders/", org.id.as_uuid());
    assert!(urls.iter().all(|u| u.starts_with(&org_part)), "{urls:?}");

    // 1: confirmed; the same answer again is a replay.
    let confirmed = press(&app, &urls[0], "1").await;
    assert_eq!(confirmed.status(), 200);
    assert!(
        confirmed
            .text()
            .await
            .unwrap_or_default()
            .contains("confirmed")
    );
    problem(press(&app, &urls[0], "1").await, 403).await;
    // A key that means nothing changes nothing.
    let nothing = press(&app, &urls[1], "9").await;
    assert!(
        nothing
            .text()
            .await
            .unwrap_or_default()
            .contains("No change")
    );
    // 2: cancelled, as the patient by phone.
    let cancelled = press(&app, &urls[1], "2").await;
    assert_eq!(cancelled.status(), 200);
    let staff = app.token(&org, Role::Staff);
    let statuses: Vec<String> = {
        let mut out = Vec::new();
        for id in &ids {
            let a: Value = app
                .get(&format!("/api/v1/appointments/{id}"), &staff)
                .await
                .json()
                .await
                .unwrap_or_default();
            out.push(a["status"].as_str().unwrap_or_default().to_owned());
        }
        out
    };
    assert_eq!(
        statuses.iter().filter(|s| *s == "cancelled").count(),
        1,
        "{statuses:?}"
    );
    // 3: the front desk.
    let desk = press(&app, &urls[2], "3").await;
    assert!(
        desk.text()
            .await
            .unwrap_or_default()
            .contains("<Dial>+16175550111</Dial>")
    );
    // A forged answer (signed with another token) is refused.
    let path = urls[2].strip_prefix(PUBLIC).unwrap_or_default();
    let forged = signed_callback(
        &app.http,
        &app.url(path),
        &urls[2],
        "not-the-token-0123456789",
        &[("Digits", "2")],
    )
    .await;
    problem(forged, 403).await;

    let trail: Value = app
        .get(
            "/api/v1/audit-events?action=appointment.cancel&limit=10",
            &app.token(&org, Role::Compliance),
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    let by = trail["items"][0]["actor"].as_str().unwrap_or_default();
    assert_eq!(by, format!("phone:patient-{p}"));

    // An opted-out phone is not called.
    let off = send(
        app.http
            .put(app.url(&format!("/api/v1/patients/{p}/reminder-preferences")))
            .bearer_auth(&ada)
            .json(&json!({"email": true, "sms": true, "voice": false})),
    )
    .await;
    assert_eq!(off.status(), 200);
    let later = now + Duration::days(8);
    book(&app, &ada, &p, later).await;
    deliver(&app, &settings, later - Duration::hours(23)).await;
    assert_eq!(voice.placed().len(), 3, "no call after the opt-out");
    app.stop().await;
}
