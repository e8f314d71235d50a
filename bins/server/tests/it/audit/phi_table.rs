use super::*;

pub(super) async fn every_phi_endpoint_leaves_exactly_its_events(app: &TestApp) {
    let org = app.org().await;
    // The assistant is on (the local provider, both agreements declared).
    let on = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(app.token(&org, Role::Admin))
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": true})),
    )
    .await;
    assert_eq!(on.status(), 200);
    // Organization settings are remembered for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let other = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let cy = app.token_as(&org, Role::Clinician, "clinician-cy");
    let p = app.new_patient(&ada, "Ada's patient").await;
    let foreign = app
        .new_patient(&app.token(&other, Role::Admin), "Elsewhere")
        .await;
    let missing = uuid::Uuid::new_v4();
    let path = format!("/api/v1/patients/{p}");
    let reason = json!({"reason": "unconscious patient in the emergency room"});
    // Appointments: one upcoming, two under way (for complete and no-show).
    let q = app.new_patient(&ada, "Ada's second patient").await;
    let assign = send(
        app.http
            .post(app.url(&format!("/api/v1/patients/{q}/care-team")))
            .bearer_auth(&admin)
            .json(&json!({"subject": "clinician-bob"})),
    )
    .await;
    assert_eq!(assign.status(), 204);
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .replace_time(time::macros::time!(09:00));
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let soon = soon.replace_nanosecond(0).unwrap_or(soon);
    let slot = |patient: &str, who: &str, start: time::OffsetDateTime| {
        json!({"patient_id": patient, "practitioner": who, "start": rfc(start),
               "end": rfc(start + time::Duration::minutes(30)), "time_zone": "UTC",
               "reason": "Ada's visit reason"})
    };
    let mut appointments = Vec::new();
    for body in [
        slot(&p, "clinician-ada", tomorrow),
        slot(&p, "clinician-ada", soon),
        slot(&q, "clinician-bob", soon),
    ] {
        let res = send(
            app.http
                .post(app.url("/api/v1/appointments"))
                .bearer_auth(&ada)
                .json(&body),
        )
        .await;
        assert_eq!(res.status(), 201);
        let a: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
        appointments.push(format!(
            "/api/v1/appointments/{}",
            a["id"].as_str().unwrap_or_default()
        ));
    }
    // Until both have started.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let [upcoming, under_way, missed] = [&appointments[0], &appointments[1], &appointments[2]];
    let prefs = format!("{path}/reminder-preferences");
    let feed = send(
        app.http
            .post(app.url("/api/v1/calendar-feeds"))
            .bearer_auth(&bob),
    )
    .await;
    assert_eq!(feed.status(), 201);
    let feed: Value = feed.json().await.unwrap_or_else(|e| panic!("{e}"));
    let feed_url = feed["url"].as_str().unwrap_or_default().to_owned();
    // A consent for Bob and a referral under it (read and revoked below).
    let consent_body = json!({"recipient": "clinician-bob", "sections": ["medications"],
        "expires_at": rfc(time::OffsetDateTime::now_utc() + time::Duration::days(7))});
    let consent = send(
        app.http
            .post(app.url(&format!("{path}/consents")))
            .bearer_auth(&ada)
            .json(&consent_body),
    )
    .await;
    assert_eq!(consent.status(), 201);
    let consent: Value = consent.json().await.unwrap_or_else(|e| panic!("{e}"));
    let consent_id = consent["id"].as_str().unwrap_or_default().to_owned();
    let referral = send(
        app.http
            .post(app.url("/api/v1/referrals"))
            .bearer_auth(&ada)
            .json(&json!({"patient_id": p, "consent_id": consent_id})),
    )
    .await;
    assert_eq!(referral.status(), 201);
    let referral: Value = referral.json().await.unwrap_or_else(|e| panic!("{e}"));
    // A bot (service key) and two verification tasks for it.
    let key = send(
        app.http
            .post(app.url("/api/v1/service-keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "voice bot", "roles": ["service"]})),
    )
    .await;
    assert_eq!(key.status(), 201);
    let key: Value = key.json().await.unwrap_or_else(|e| panic!("{e}"));
    let bot = key["key"].as_str().unwrap_or_default().to_owned();
    let task_body = json!({"patient_id": p, "payer_name": "Acme Health",
        "payer_phone": "+1 800 555 0199", "plan": "Gold PPO", "procedure_codes": ["99213"]});
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let t = send(
            app.http
                .post(app.url("/api/v1/verification-tasks"))
                .bearer_auth(&admin)
                .json(&task_body),
        )
        .await;
        assert_eq!(t.status(), 201);
        let t: Value = t.json().await.unwrap_or_else(|e| panic!("{e}"));
        tasks.push(format!(
            "/api/v1/verification-tasks/{}",
            t["id"].as_str().unwrap_or_default()
        ));
    }
    let (worked, withdrawn) = (&tasks[0], &tasks[1]);
    let shared = format!(
        "/api/v1/referrals/{}/record",
        referral["id"].as_str().unwrap_or_default()
    );
    let feed_id = feed["id"].as_str().unwrap_or_default().to_owned();

    type Case<'a> = (&'a str, reqwest::RequestBuilder, Vec<(&'a str, &'a str)>);
    let h = &app.http;
    let cases: Vec<Case> = vec![
        (
            "create",
            h.post(app.url("/api/v1/patients"))
                .bearer_auth(&ada)
                .json(&patient("New")),
            vec![("patient.create", "allowed")],
        ),
        (
            "read",
            h.get(app.url(&path)).bearer_auth(&ada),
            vec![("patient.read", "allowed")],
        ),
        (
            "read a missing patient",
            h.get(app.url(&format!("/api/v1/patients/{missing}")))
                .bearer_auth(&ada),
            vec![("patient.read", "not_found")],
        ),
        (
            "read another org's patient",
            h.get(app.url(&format!("/api/v1/patients/{foreign}")))
                .bearer_auth(&ada),
            vec![
                ("patient.read", "not_found"),
                ("security.cross_tenant_attempt", "denied"),
            ],
        ),
        (
            "read outside the care team",
            h.get(app.url(&path)).bearer_auth(&bob),
            vec![
                ("patient.read", "denied"),
                ("security.authorization_denied", "denied"),
            ],
        ),
        (
            "update",
            h.patch(app.url(&path))
                .bearer_auth(&ada)
                .json(&json!({"phone": "+1 555 0100"})),
            vec![("patient.update", "allowed")],
        ),
        (
            "list",
            h.get(app.url("/api/v1/patients")).bearer_auth(&bob),
            vec![("patient.list", "allowed")],
        ),
        (
            "search",
            h.get(app.url("/api/v1/patients?member_id=NOPE-1"))
                .bearer_auth(&admin),
            vec![("patient.search", "not_found")],
        ),
        (
            "break-glass",
            h.post(app.url(&format!("{path}/break-glass")))
                .bearer_auth(&bob)
                .json(&reason),
            vec![
                ("patient.break_glass", "allowed"),
                ("security.break_glass", "allowed"),
            ],
        ),
        (
            "read under break-glass",
            h.get(app.url(&path)).bearer_auth(&bob),
            vec![("patient.read", "allowed")],
        ),
        (
            "book",
            h.post(app.url("/api/v1/appointments"))
                .bearer_auth(&ada)
                .json(&slot(
                    &p,
                    "clinician-ada",
                    tomorrow + time::Duration::days(1),
                )),
            vec![("appointment.create", "allowed")],
        ),
        (
            "book outside the care team",
            h.post(app.url("/api/v1/appointments"))
                .bearer_auth(&cy)
                .json(&slot(
                    &p,
                    "clinician-ada",
                    tomorrow + time::Duration::days(2),
                )),
            vec![
                ("appointment.write", "denied"),
                ("security.authorization_denied", "denied"),
            ],
        ),
        (
            "read an appointment",
            h.get(app.url(upcoming)).bearer_auth(&ada),
            vec![("appointment.read", "allowed")],
        ),
        (
            "read a missing appointment",
            h.get(app.url(&format!("/api/v1/appointments/{missing}")))
                .bearer_auth(&ada),
            vec![("appointment.read", "not_found")],
        ),
        (
            "list a patient's appointments",
            h.get(app.url(&format!("/api/v1/appointments?patient_id={q}")))
                .bearer_auth(&bob),
            vec![("appointment.list", "allowed")],
        ),
        (
            "free slots",
            h.get(app.url(&format!(
                "/api/v1/practitioners/clinician-ada/free-slots?date={}&time_zone=UTC",
                tomorrow.date()
            )))
            .bearer_auth(&ada),
            vec![("appointment.availability", "allowed")],
        ),
        (
            "reschedule",
            h.post(app.url(&format!("{upcoming}/reschedule")))
                .bearer_auth(&ada)
                .json(&json!({"start": rfc(tomorrow + time::Duration::hours(2)),
                              "end": rfc(tomorrow + time::Duration::hours(3))})),
            vec![("appointment.reschedule", "allowed")],
        ),
        (
            "complete",
            h.post(app.url(&format!("{under_way}/complete")))
                .bearer_auth(&ada),
            vec![("appointment.complete", "allowed")],
        ),
        (
            "no-show",
            h.post(app.url(&format!("{missed}/no-show")))
                .bearer_auth(&bob),
            vec![("appointment.no_show", "allowed")],
        ),
        (
            "cancel",
            h.post(app.url(&format!("{upcoming}/cancel")))
                .bearer_auth(&ada),
            vec![("appointment.cancel", "allowed")],
        ),
        (
            "cancel outside the care team",
            h.post(app.url(&format!("{under_way}/cancel")))
                .bearer_auth(&cy),
            vec![
                ("appointment.write", "denied"),
                ("security.authorization_denied", "denied"),
            ],
        ),
        (
            "reminder preferences",
            h.get(app.url(&prefs)).bearer_auth(&ada),
            vec![("patient.reminder_preferences.read", "allowed")],
        ),
        (
            "change reminder preferences",
            h.put(app.url(&prefs))
                .bearer_auth(&ada)
                .json(&json!({"email": false, "sms": true})),
            vec![("patient.reminder_preferences.update", "allowed")],
        ),
        (
            "record a medication",
            h.post(app.url(&format!("{path}/medications")))
                .bearer_auth(&ada)
                .json(
                    &json!({"drug_name": "Ada's drug", "dose": "1 mg", "schedule": "daily",
                              "started_on": "2026-11-01"}),
                ),
            vec![("medication.create", "allowed")],
        ),
        (
            "report a side effect",
            h.post(app.url(&format!("{path}/side-effects")))
                .bearer_auth(&ada)
                .json(&json!({"symptom": "Ada's symptom", "severity": "mild",
                              "onset_on": "2026-11-02"})),
            vec![("side_effect.create", "allowed")],
        ),
        (
            "read medications",
            h.get(app.url(&format!("{path}/medications")))
                .bearer_auth(&ada),
            vec![("medication.read", "allowed")],
        ),
        (
            "correlate one patient",
            h.get(app.url(&format!("{path}/side-effect-correlations")))
                .bearer_auth(&ada),
            vec![("medication.read", "allowed")],
        ),
        (
            "correlate the organization",
            h.get(app.url("/api/v1/analytics/side-effect-correlations"))
                .bearer_auth(app.token_as(&org, Role::Compliance, "compliance-officer")),
            vec![("medication.aggregate", "allowed")],
        ),
        (
            "research aggregates",
            h.get(app.url("/api/v1/analytics/research"))
                .bearer_auth(app.token_as(&org, Role::Compliance, "compliance-officer")),
            vec![("research.aggregate", "allowed")],
        ),
        (
            "medications outside the care team",
            h.get(app.url(&format!("{path}/medications")))
                .bearer_auth(&cy),
            vec![
                ("patient.read", "denied"),
                ("security.authorization_denied", "denied"),
            ],
        ),
        (
            "read the care team",
            h.get(app.url(&format!("{path}/care-team")))
                .bearer_auth(&ada),
            vec![("patient.care_team", "allowed")],
        ),
        (
            "record a consent",
            h.post(app.url(&format!("{path}/consents")))
                .bearer_auth(&ada)
                .json(&consent_body),
            vec![("consent.create", "allowed")],
        ),
        (
            "list consents",
            h.get(app.url(&format!("{path}/consents")))
                .bearer_auth(&ada),
            vec![("consent.list", "allowed")],
        ),
        (
            "refer",
            h.post(app.url("/api/v1/referrals"))
                .bearer_auth(&ada)
                .json(&json!({"patient_id": p, "consent_id": consent_id})),
            vec![
                ("referral.create", "allowed"),
                ("referral.received", "allowed"),
            ],
        ),
        (
            "list referrals",
            h.get(app.url("/api/v1/referrals")).bearer_auth(&bob),
            vec![("referral.list", "allowed")],
        ),
        (
            "read a shared record",
            h.get(app.url(&shared)).bearer_auth(&bob),
            vec![
                ("referral.shared_read", "allowed"),
                ("referral.shared_read", "allowed"),
                ("medication.read", "allowed"),
            ],
        ),
        (
            "revoke a consent",
            h.post(app.url(&format!("{path}/consents/{consent_id}/revoke")))
                .bearer_auth(&ada),
            vec![("consent.revoke", "allowed")],
        ),
        (
            "read a shared record after revocation",
            h.get(app.url(&shared)).bearer_auth(&bob),
            vec![
                ("referral.shared_read", "denied"),
                ("referral.shared_read", "denied"),
            ],
        ),
        (
            "create a verification task",
            h.post(app.url("/api/v1/verification-tasks"))
                .bearer_auth(&admin)
                .json(&task_body),
            vec![("verification.create", "allowed")],
        ),
        (
            "list verification tasks",
            h.get(app.url("/api/v1/verification-tasks"))
                .bearer_auth(&admin),
            vec![("verification.list", "allowed")],
        ),
        (
            "read a verification task",
            h.get(app.url(worked)).bearer_auth(&admin),
            vec![("verification.read", "allowed")],
        ),
        (
            "the bot's queue",
            h.get(app.url("/api/v1/verification-tasks/queue"))
                .bearer_auth(&bot),
            vec![("verification.list", "allowed")],
        ),
        (
            "claim",
            h.post(app.url(&format!("{worked}/claim")))
                .bearer_auth(&bot),
            vec![("verification.claim", "allowed")],
        ),
        (
            "bot view",
            h.get(app.url(&format!("{worked}/bot-view")))
                .bearer_auth(&bot),
            vec![("verification.bot_view", "allowed")],
        ),
        (
            "progress",
            h.post(app.url(&format!("{worked}/progress")))
                .bearer_auth(&bot)
                .json(&json!({"status": "calling"})),
            vec![("verification.progress", "allowed")],
        ),
        (
            "transcript upload",
            h.post(app.url(&format!("{worked}/transcript")))
                .bearer_auth(&bot)
                .json(&json!({"seq": 0, "text": "Agent: hello"})),
            vec![("verification.transcript", "allowed")],
        ),
        (
            "transcript read",
            h.get(app.url(&format!("{worked}/transcript")))
                .bearer_auth(&admin),
            vec![("verification.transcript_read", "allowed")],
        ),
        (
            "set the supervisor's number",
            h.put(app.url("/api/v1/organization/verification-settings"))
                .bearer_auth(&admin)
                .json(&json!({"supervisor_phone": "+1 617 555 0123"})),
            vec![("verification.settings_update", "allowed")],
        ),
        (
            "read the supervisor's number",
            h.get(app.url("/api/v1/organization/verification-settings"))
                .bearer_auth(&admin),
            vec![("verification.settings_read", "allowed")],
        ),
        (
            "bot view while calling, with the supervisor",
            h.get(app.url(&format!("{worked}/bot-view")))
                .bearer_auth(&bot),
            vec![("verification.bot_view", "allowed")],
        ),
        (
            "cancel a verification task",
            h.post(app.url(&format!("{withdrawn}/cancel")))
                .bearer_auth(&admin),
            vec![("verification.cancel", "allowed")],
        ),
        (
            "make a calendar feed",
            h.post(app.url("/api/v1/calendar-feeds")).bearer_auth(&ada),
            vec![("calendar_feed.create", "allowed")],
        ),
        (
            "list calendar feeds",
            h.get(app.url("/api/v1/calendar-feeds")).bearer_auth(&ada),
            vec![("calendar_feed.list", "allowed")],
        ),
        (
            "read a calendar feed",
            h.get(app.url(&feed_url)),
            vec![("calendar_feed.read", "not_found")],
        ),
        (
            "revoke a calendar feed",
            h.delete(app.url(&format!("/api/v1/calendar-feeds/{feed_id}")))
                .bearer_auth(&bob),
            vec![("calendar_feed.revoke", "allowed")],
        ),
        (
            "ask the assistant about no patient",
            h.post(app.url("/api/v1/assistant/messages"))
                .bearer_auth(&ada)
                .json(&json!({"message": "draft a leaflet"})),
            vec![
                ("assistant.history", "allowed"),
                ("assistant.message", "allowed"),
            ],
        ),
        (
            "ask the assistant about a patient",
            h.post(app.url("/api/v1/assistant/messages"))
                .bearer_auth(&ada)
                .json(&json!({"message": "summarise", "patient_id": p})),
            vec![
                ("patient.read", "allowed"),
                ("assistant.history", "allowed"),
                ("patient.disclosed", "allowed"),
                ("assistant.message", "allowed"),
            ],
        ),
        (
            "read the assistant conversation about a patient",
            h.get(app.url(&format!("/api/v1/assistant/messages?patient_id={p}")))
                .bearer_auth(&ada),
            vec![("assistant.history", "allowed")],
        ),
        (
            "ask the assistant about a foreign patient",
            h.post(app.url("/api/v1/assistant/messages"))
                .bearer_auth(&ada)
                .json(&json!({"message": "summarise", "patient_id": foreign})),
            vec![
                ("patient.read", "not_found"),
                ("security.cross_tenant_attempt", "denied"),
            ],
        ),
        (
            "delete",
            h.delete(app.url(&path)).bearer_auth(&admin),
            vec![("patient.delete", "allowed")],
        ),
    ];
    for (i, (name, request, expected)) in cases.into_iter().enumerate() {
        let id = format!("audit-case-{i}");
        let res = send(request.header("x-request-id", &id)).await;
        assert!(res.status().as_u16() < 500, "{name}: {}", res.status());
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(a, o)| (a.to_owned(), o.to_owned()))
            .collect();
        assert_eq!(events_of(app, &org, &id).await, expected, "{name}");
    }
    // Events name who acted, from where, and which fields; never values.
    let all = trail(app, &org, "").await;
    let update = all
        .iter()
        .find(|e| e["action"] == "patient.update")
        .unwrap_or_else(|| panic!("update event"));
    assert_eq!(update["actor"], "clinician-ada");
    assert_eq!(update["actor_kind"], "user");
    assert_eq!(update["phi_fields"], json!(["phone"]));
    assert_eq!(update["origin"]["client_ip"], "127.0.0.1");
    let text = serde_json::to_string(&all).unwrap_or_default();
    for value in [
        "Ada's patient",
        "555 0100",
        "emergency room",
        "1980-02-03",
        "visit reason",
        "Ada's drug",
        "Ada's symptom",
    ] {
        assert!(!text.contains(value), "{value} must not be in the trail");
    }
}
