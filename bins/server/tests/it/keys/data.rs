use super::*;

pub(super) async fn fill(app: &TestApp, voice: &VoiceApi, patients: usize) -> Made {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let res = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(&admin)
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": true})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut ids = Vec::new();
    for i in 0..patients {
        let mut body = crate::support::patient(&format!("Rotated{i}"));
        if i == 0 {
            body["member_id"] = json!(SEARCHED);
            body["sex"] = json!("female");
        }
        let made = post(app, &ada, "/api/v1/patients", &body).await;
        ids.push(made["id"].as_str().unwrap_or_default().to_owned());
    }
    let p = ids[0].clone();
    // An idempotent create: its answer is stored sealed.
    let idempotency_key = format!("\"{}\"", uuid::Uuid::new_v4());
    let first = send(
        app.http
            .post(app.url("/api/v1/patients"))
            .bearer_auth(&ada)
            .header("idempotency-key", &idempotency_key)
            .json(&crate::support::patient("Idempotent")),
    )
    .await;
    assert_eq!(first.status(), 201);
    let start = (time::OffsetDateTime::now_utc() + time::Duration::days(3))
        .replace_time(time::Time::from_hms(10, 0, 0).unwrap_or_else(|e| panic!("{e}")));
    let appointment = post(
        app,
        &ada,
        "/api/v1/appointments",
        &json!({
            "patient_id": p, "practitioner": "clinician-ada",
            "start": start.format(&Rfc3339).unwrap_or_default(),
            "end": (start + time::Duration::minutes(30)).format(&Rfc3339).unwrap_or_default(),
            "time_zone": "Europe/Berlin", "reason": "Rotating tremor follow-up",
        }),
    )
    .await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    post(
        app,
        &ada,
        &format!("/api/v1/patients/{p}/medications"),
        &json!({"drug_name": "Rotaprazole", "dose": "10 mg", "schedule": "once daily",
                "started_on": "2026-01-01", "stopped_on": "2026-01-20"}),
    )
    .await;
    post(
        app,
        &ada,
        &format!("/api/v1/patients/{p}/side-effects"),
        &json!({"symptom": "Spinning headache", "severity": "moderate", "onset_on": "2026-01-03"}),
    )
    .await;
    post(
        app,
        &bob,
        &format!("/api/v1/patients/{p}/break-glass"),
        &json!({"reason": "unconscious patient in the emergency room"}),
    )
    .await;
    let key = post(
        app,
        &admin,
        "/api/v1/service-keys",
        &json!({"name": "voice bot", "roles": ["service"]}),
    )
    .await;
    let bot = key["key"].as_str().unwrap_or_default().to_owned();
    let mut tasks = Vec::new();
    for outcome in ["completed", "failed"] {
        let task = post(app, &staff, "/api/v1/verification-tasks", &json!({"patient_id": p, "payer_name": "Acme Health", "payer_phone": "+1 800 555 0199", "plan": "Gold PPO", "procedure_codes": ["99213", "J3490"]})).await;
        let base = format!(
            "/api/v1/verification-tasks/{}",
            task["id"].as_str().unwrap_or_default()
        );
        post(app, &bot, &format!("{base}/claim"), &json!({})).await;
        let call = if outcome == "completed" {
            // Carapace places this one: the provider's callback puts the
            // task on the phone, and its recording is stored sealed.
            Some(telephone(app, voice, &org, &admin, &staff, &base).await)
        } else {
            post(
                app,
                &bot,
                &format!("{base}/progress"),
                &json!({"status": "calling"}),
            )
            .await;
            None
        };
        for (seq, text) in ["Agent: Acme Health. ", "Agent: approved, ref PA-77."]
            .iter()
            .enumerate()
        {
            post(
                app,
                &bot,
                &format!("{base}/transcript"),
                &json!({"seq": seq, "text": text}),
            )
            .await;
        }
        let end = if outcome == "completed" {
            json!({"status": "completed", "reference_number": "PA-77"})
        } else {
            json!({"status": "failed", "reason": "the payer hung up"})
        };
        post(app, &bot, &format!("{base}/progress"), &end).await;
        if let Some(call) = call {
            voice.put_recording(RECORDING, wav(2));
            let path = format!("/api/v1/telephony/{}/recording", org.id.as_uuid());
            let stored = signed_callback(
                &app.http,
                &app.url(&path),
                &format!("{PUBLIC}{path}"),
                VOICE_TOKEN,
                &[
                    ("CallSid", call.as_str()),
                    ("RecordingSid", RECORDING),
                    ("RecordingStatus", "completed"),
                    ("RecordingDuration", "2"),
                ],
            )
            .await;
            assert_eq!(stored.status(), 204);
        }
        tasks.push(task["id"].as_str().unwrap_or_default().to_owned());
    }
    // The supervisor's number, sealed as an organization setting.
    let supervisor = send(
        app.http
            .put(app.url("/api/v1/organization/verification-settings"))
            .bearer_auth(&admin)
            .json(&json!({"supervisor_phone": "+1 617 555 0123"})),
    )
    .await;
    assert_eq!(supervisor.status(), 200);
    // Organization settings (ai_baa) are remembered for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let answer = post(
        app,
        &ada,
        "/api/v1/assistant/messages",
        &json!({"message": "hello rotation"}),
    )
    .await;
    assert_eq!(
        answer["answer"],
        "(local assistant) You wrote: hello rotation"
    );
    // A bulk export: its NDJSON files are sealed too.
    let kick = send(
        app.http
            .get(app.url("/fhir/R4/Patient/$export?_type=Patient"))
            .bearer_auth(&admin)
            .header("prefer", "respond-async"),
    )
    .await;
    assert_eq!(kick.status(), 202);
    let export = kick
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replacen(PUBLIC, &app.url(""), 1);
    let mut manifest = serde_json::Value::Null;
    for _ in 0..200 {
        let polled = send(app.http.get(&export).bearer_auth(&admin)).await;
        if polled.status() == 200 {
            manifest = polled.json().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Links are built on the public URL; this test reaches the app directly.
    let export_file = manifest["output"][0]["url"]
        .as_str()
        .unwrap_or_default()
        .replacen(PUBLIC, &app.url(""), 1);
    assert!(!export_file.is_empty(), "{manifest}");
    Made {
        org,
        patients: ids,
        appointment,
        task: tasks[0].clone(),
        failed_task: tasks[1].clone(),
        idempotency_key,
        export_file,
    }
}

/// Everything `made` holds reads back through the API, and search by both
/// blind-indexed fields finds its first patient.
pub(super) async fn reads_back(app: &TestApp, made: &Made) {
    let ada = app.token_as(&made.org, Role::Clinician, "clinician-ada");
    let staff = app.token_as(&made.org, Role::Staff, "front-desk");
    for (i, id) in made.patients.iter().enumerate() {
        let p = get(app, &ada, &format!("/api/v1/patients/{id}")).await;
        assert_eq!(p["given_name"], format!("Rotated{i}"));
        assert_eq!(p["email"], "jane@example.org");
    }
    let first = get(app, &ada, &format!("/api/v1/patients/{}", made.patients[0])).await;
    assert_eq!(
        (first["member_id"].as_str(), first["sex"].as_str()),
        (Some(SEARCHED), Some("female"))
    );
    let by_member = get(app, &ada, &format!("/api/v1/patients?member_id={SEARCHED}")).await;
    let found: Vec<&str> = by_member["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        found,
        vec![made.patients[0].as_str()],
        "search by member id: {by_member}"
    );
    let by_name = get(
        app,
        &ada,
        "/api/v1/patients?family_name=ROE&birth_date=1980-02-03&limit=100",
    )
    .await;
    let found: Vec<&str> = by_name["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    for id in &made.patients {
        assert!(
            found.contains(&id.as_str()),
            "search by family name and birth date finds {id}: {by_name}"
        );
    }
    let appointment = get(
        app,
        &ada,
        &format!("/api/v1/appointments/{}", made.appointment),
    )
    .await;
    assert_eq!(appointment["reason"], "Rotating tremor follow-up");
    let history = get(
        app,
        &ada,
        &format!("/api/v1/patients/{}/medications", made.patients[0]),
    )
    .await
    .to_string();
    for marker in ["Rotaprazole", "2026-01-20", "Spinning headache", "moderate"] {
        assert!(history.contains(marker), "{marker} in {history}");
    }
    let task = get(
        app,
        &staff,
        &format!("/api/v1/verification-tasks/{}", made.task),
    )
    .await;
    assert_eq!(
        (task["plan"].as_str(), task["reference_number"].as_str()),
        (Some("Gold PPO"), Some("PA-77"))
    );
    let failed = get(
        app,
        &staff,
        &format!("/api/v1/verification-tasks/{}", made.failed_task),
    )
    .await;
    assert_eq!(failed["status"], "failed");
    for task in [&made.task, &made.failed_task] {
        let transcript = get(
            app,
            &staff,
            &format!("/api/v1/verification-tasks/{task}/transcript"),
        )
        .await;
        assert_eq!(
            transcript["text"],
            "Agent: Acme Health. Agent: approved, ref PA-77."
        );
    }
    let admin = app.token(&made.org, Role::Admin);
    let settings = get(app, &admin, "/api/v1/organization/verification-settings").await;
    assert_eq!(settings["supervisor_phone"], "+1 617 555 0123");
    let account = get(app, &admin, "/api/v1/organization/telephony").await;
    assert_eq!(account["account_sid"], VOICE_ACCOUNT);
    let played = app
        .get(
            &format!(
                "/api/v1/verification-tasks/{}/recordings/{RECORDING}",
                made.task
            ),
            &staff,
        )
        .await;
    assert_eq!(played.status(), 200);
    assert_eq!(played.bytes().await.unwrap_or_default().to_vec(), wav(2));
    let ndjson = send(app.http.get(&made.export_file).bearer_auth(&admin)).await;
    assert_eq!(ndjson.status(), 200);
    assert!(
        ndjson
            .text()
            .await
            .unwrap_or_default()
            .contains("\"resourceType\":\"Patient\""),
        "the export's file opens"
    );
    let voicemails = get(app, &staff, "/api/v1/voicemails").await;
    assert_eq!(voicemails[0]["caller"], "+16175550199");
    let id = voicemails[0]["id"].as_str().unwrap_or_default();
    let heard = app
        .get(&format!("/api/v1/voicemails/{id}/audio"), &staff)
        .await;
    assert_eq!(heard.bytes().await.unwrap_or_default().to_vec(), wav(1));
    let turns = get(app, &ada, "/api/v1/assistant/messages").await;
    let texts: Vec<&str> = turns
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        texts,
        vec![
            "hello rotation",
            "(local assistant) You wrote: hello rotation"
        ]
    );
    let again = send(
        app.http
            .post(app.url("/api/v1/patients"))
            .bearer_auth(&ada)
            .header("idempotency-key", &made.idempotency_key)
            .json(&crate::support::patient("Idempotent")),
    )
    .await;
    assert_eq!(again.status(), 201);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true"),
        "the stored answer opens"
    );
}
