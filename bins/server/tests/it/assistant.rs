//! The AI assistant: off without a provider and both agreements (each
//! refusal names the missing one); with them, the provider (a local
//! stand-in of the chat-completions API) receives placeholders only, and
//! the answer comes back with the identifiers restored.

use carapace_auth::Role;
use carapace_testkit::receiver::{Answer, Receiver};
use serde_json::{Value, json};

use crate::support::{Backend, Org, TestApp, problem, send, spawn_app, spawn_app_with};

async fn ask(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/assistant/messages"))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

async fn org_baa(app: &TestApp, org: &Org, signed: bool) {
    let res = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(app.token(org, Role::Admin))
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": signed})),
    )
    .await;
    assert_eq!(res.status(), 200);
    // Organization settings are remembered for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn the_assistant_is_off_until_both_agreements_are_declared() {
    let Some(off) = spawn_app(Backend::Sqlite, "assistant_off").await else {
        return;
    };
    let org = off.org().await;
    let ada = off.token_as(&org, Role::Clinician, "clinician-ada");
    let hello = json!({"message": "hello"});
    assert_eq!(
        problem(ask(&off, &ada, &hello).await, 503).await["code"],
        "ai_disabled"
    );
    off.stop().await;

    let Some(app) = spawn_app_with(Backend::Sqlite, "assistant_no_baa", |s| {
        s.ai_provider = "local".into();
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let refused = problem(ask(&app, &ada, &hello).await, 503).await;
    assert_eq!(refused["code"], "deployment_baa_missing");
    app.stop().await;

    let Some(app) = spawn_app_with(Backend::Sqlite, "assistant_baa", |s| {
        s.ai_provider = "local".into();
        s.ai_baa_signed = true;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    assert_eq!(
        problem(ask(&app, &ada, &hello).await, 403).await["code"],
        "org_baa_missing"
    );
    org_baa(&app, &org, true).await;
    let res = ask(&app, &ada, &hello).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap_or_default();
    assert_eq!(answer["answer"], "(local assistant) You wrote: hello");
    // Bad input, and roles without the assistant.
    problem(ask(&app, &ada, &json!({"message": ""})).await, 422).await;
    problem(
        ask(&app, &ada, &json!({"message": "x".repeat(4001)})).await,
        422,
    )
    .await;
    problem(
        ask(&app, &app.token(&org, Role::Patient), &hello).await,
        403,
    )
    .await;
    app.stop().await;
}

async fn placeholders_only(backend: Backend, test: &str) {
    let provider = Receiver::start().await;
    provider.answer(Answer {
        status: "200 OK".into(),
        headers: vec!["content-type: application/json".into()],
        body: json!({"choices": [{"message": {"role": "assistant",
            "content": "Summary for [PATIENT_NAME], born [PATIENT_BIRTH_DATE]."}}]})
        .to_string()
        .into_bytes(),
    });
    let base = provider.base.clone();
    let Some(app) = spawn_app_with(backend, test, move |s| {
        s.ai_provider = "openai".into();
        s.ai_baa_signed = true;
        s.ai_url = Some(base);
        s.ai_api_key = Some("sk-test-key".to_owned().into());
        s.ai_allow_loopback = true;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    org_baa(&app, &org, true).await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let p = app.new_patient(&ada, "Zelda").await;
    let identifiers = [
        "Zelda",
        "ZELDA",
        "Roe",
        "1980-02-03",
        "M-100",
        "+1 555 010 0100",
        "15550100100",
        "jane@example.org",
    ];
    let question = "Summarise the visit of ZELDA Roe (born 1980-02-03, member M-100). \
         Call +1 555 010 0100 or 15550100100, mail jane@example.org. Zelda is fine.";
    let res = ask(&app, &ada, &json!({"message": question, "patient_id": p})).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap_or_default();
    assert_eq!(answer["answer"], "Summary for Zelda Roe, born 1980-02-03.");
    // A second message carries the history, redacted too.
    let res = ask(
        &app,
        &ada,
        &json!({"message": "And Zelda's next steps?", "patient_id": p}),
    )
    .await;
    assert_eq!(res.status(), 200);

    let calls = provider.received();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].line.starts_with("POST /v1/chat/completions"));
    assert_eq!(calls[0].header("authorization"), Some("Bearer sk-test-key"));
    for call in &calls {
        let sent = String::from_utf8_lossy(&call.body).to_string();
        for id in identifiers {
            assert!(!sent.contains(id), "{id} reached the provider: {sent}");
        }
        assert!(
            sent.contains("[PATIENT_NAME]") && sent.contains("[PATIENT_BIRTH_DATE]"),
            "{sent}"
        );
    }
    let second = String::from_utf8_lossy(&calls[1].body).to_string();
    assert!(
        second.contains("[PATIENT_MEMBER_ID]")
            && second.contains("[PATIENT_GIVEN_NAME]'s next steps")
    );
    // The stored conversation is the user's own, with the real text.
    let history: Value = app
        .get(&format!("/api/v1/assistant/messages?patient_id={p}"), &ada)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(history.as_array().map(Vec::len), Some(4));
    assert_eq!(
        history[1]["text"],
        "Summary for Zelda Roe, born 1980-02-03."
    );
    // The conversation about no patient is another one.
    let none: Value = app
        .get("/api/v1/assistant/messages", &ada)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(none, json!([]));
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let theirs: Value = app
        .get("/api/v1/assistant/messages", &bob)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(theirs, json!([]));
    // A patient outside the care team cannot be put in context.
    let refused = ask(&app, &bob, &json!({"message": "hi", "patient_id": p})).await;
    problem(refused, 403).await;
    app.stop().await;
}

#[tokio::test]
async fn the_provider_receives_placeholders_only_on_sqlite() {
    placeholders_only(Backend::Sqlite, "assistant_placeholders_sqlite").await;
}

#[tokio::test]
async fn the_provider_receives_placeholders_only_on_postgres() {
    placeholders_only(Backend::Postgres, "assistant_placeholders_postgres").await;
}

#[tokio::test]
async fn assistant_requests_have_their_own_stricter_limit() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "assistant_limit", |s| {
        s.ai_provider = "local".into();
        s.ai_baa_signed = true;
        s.rate_limit_ai_per_minute = 1;
        s.rate_limit_ai_burst = 2;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    org_baa(&app, &org, true).await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let hello = json!({"message": "hello"});
    for _ in 0..2 {
        assert_eq!(ask(&app, &ada, &hello).await.status(), 200);
    }
    let limited = ask(&app, &ada, &hello).await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(problem(limited, 429).await["code"], "rate_limited");
    // The rest of the API is another class: still open.
    assert_eq!(app.get("/api/v1/patients", &ada).await.status(), 200);
    // Another user has their own quota.
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    assert_eq!(ask(&app, &bob, &hello).await.status(), 200);
    app.stop().await;
}

/// A provider stand-in that records every request body and answers with
/// placeholders, so restoring can be seen.
async fn recording_app(backend: Backend, test: &str) -> Option<(TestApp, Receiver)> {
    let provider = Receiver::start().await;
    provider.answer(Answer {
        status: "200 OK".into(),
        headers: vec!["content-type: application/json".into()],
        body: json!({"choices": [{"message": {"role": "assistant",
            "content": "Noted for [PATIENT_GIVEN_NAME]; ring [PHONE_1]."}}]})
        .to_string()
        .into_bytes(),
    });
    let base = provider.base.clone();
    let app = spawn_app_with(backend, test, move |s| {
        s.ai_provider = "openai".into();
        s.ai_baa_signed = true;
        s.ai_url = Some(base);
        s.ai_api_key = Some("sk-test-key".to_owned().into());
        s.ai_allow_loopback = true;
    })
    .await?;
    Some((app, provider))
}

async fn across_patients(backend: Backend, test: &str) {
    let Some((app, provider)) = recording_app(backend, test).await else {
        return;
    };
    let org = app.org().await;
    org_baa(&app, &org, true).await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let zelda = json!({"given_name": "Zelda", "family_name": "Quartermain", "birth_date": "1961-07-14",
        "member_id": "ZQ-40417", "phone": "+1 555 010 0141", "email": "zelda.q@example.org"});
    let yara = json!({"given_name": "Yara", "family_name": "Oxenford", "birth_date": "1975-11-02",
        "member_id": "YO-77310", "phone": "+1 555 010 0177", "email": "yara.o@example.net"});
    let mut ids = Vec::new();
    for body in [&zelda, &yara] {
        let res = app.create_patient(&ada, body).await;
        assert_eq!(res.status(), 201);
        let made: Value = res.json().await.unwrap_or_default();
        ids.push(made["id"].as_str().unwrap_or_default().to_owned());
    }
    let turns = [
        (
            Some(&ids[0]),
            "Zelda Quartermain (DOB 07/14/1961, member ZQ-40417) says her neighbour, SSN 123-45-6789, reached her at zelda.q@example.org and on 555-010-0199.",
        ),
        (
            Some(&ids[1]),
            "Yara Oxenford, born 1975-11-02, mail yara.o@example.net or call +1 555 010 0177; lives at 12 Harbor View Road, 02139.",
        ),
        (
            None,
            "Draft a letter to the daughter, born March 3rd, 1990, at daughter@example.com or 555-010-0123, account #7731-22; portal https://portal.example.org/x?id=9 from 10.2.3.4.",
        ),
    ];
    let mut answers = Vec::new();
    for (patient, message) in turns {
        let mut body = json!({"message": message});
        if let Some(p) = patient {
            body["patient_id"] = json!(p);
        }
        let res = ask(&app, &ada, &body).await;
        assert_eq!(res.status(), 200);
        let answer: Value = res.json().await.unwrap_or_default();
        answers.push(answer["answer"].as_str().unwrap_or_default().to_owned());
    }
    let identifiers = [
        "Zelda",
        "Quartermain",
        "1961",
        "ZQ-40417",
        "0141",
        "zelda.q@example.org",
        "Yara",
        "Oxenford",
        "1975",
        "YO-77310",
        "0177",
        "yara.o@example.net",
        "123-45-6789",
        "555-010-0199",
        "Harbor View",
        "02139",
        "1990",
        "daughter@example.com",
        "555-010-0123",
        "7731-22",
        "portal.example.org",
        "10.2.3.4",
    ];
    let calls = provider.received();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        let sent = String::from_utf8_lossy(&call.body).to_string();
        for id in identifiers {
            assert!(!sent.contains(id), "{id} reached the provider: {sent}");
        }
        // Each conversation is its own: a system prompt and one message.
        let messages: Value = serde_json::from_slice(&call.body).unwrap_or_default();
        assert_eq!(
            messages["messages"].as_array().map(Vec::len),
            Some(2),
            "{sent}"
        );
    }
    // The answers come back whole: placeholders restored for the user.
    assert_eq!(answers[0], "Noted for Zelda; ring 555-010-0199.");
    assert_eq!(answers[1], "Noted for Yara; ring [PHONE_1].");
    assert_eq!(
        answers[2],
        "Noted for [PATIENT_GIVEN_NAME]; ring 555-010-0123."
    );
    // Each message about a patient is a disclosure in that patient's access
    // log, naming the provider; the one about nobody is in no access log.
    let compliance = app.token(&org, Role::Compliance);
    for id in &ids {
        let log: Value = app
            .get(&format!("/api/v1/patients/{id}/access-log"), &compliance)
            .await
            .json()
            .await
            .unwrap_or_default();
        let disclosed: Vec<&Value> = log["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["action"] == "patient.disclosed")
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(disclosed.len(), 1, "{log}");
        assert!(
            disclosed[0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("openai-compatible:")),
            "{log}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_conversation_across_two_patients_and_free_text_sends_no_identifier_on_sqlite() {
    across_patients(Backend::Sqlite, "assistant_across_sqlite").await;
}

#[tokio::test]
async fn a_conversation_across_two_patients_and_free_text_sends_no_identifier_on_postgres() {
    across_patients(Backend::Postgres, "assistant_across_postgres").await;
}
