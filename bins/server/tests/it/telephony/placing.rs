use super::*;

/// An app with the stand-in's account set and a task a bot claimed:
/// ready to place its call.
struct ReadyToCall {
    app: TestApp,
    org: Org,
    staff: String,
    id: String,
    /// The task's call route.
    path: String,
}

async fn ready_to_call(backend: Backend, test: &str, voice: &VoiceApi) -> Option<ReadyToCall> {
    let app = app(backend, test, voice).await?;
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let bot = bot_key(&app, &admin).await;
    set_account(&app, &admin, ACCOUNT, TOKEN).await;
    let id = claimed_task(&app, &admin, &staff, &bot).await;
    let path = format!("/api/v1/verification-tasks/{id}/call");
    Some(ReadyToCall {
        app,
        org,
        staff,
        id,
        path,
    })
}

#[tokio::test]
async fn a_provider_that_fails_or_hangs_loses_no_task() {
    let voice = VoiceApi::start();
    voice.account(ACCOUNT, TOKEN);
    let Some(ReadyToCall {
        app,
        staff,
        id,
        path,
        ..
    }) = ready_to_call(Backend::Sqlite, "telephony_provider_down", &voice).await
    else {
        return;
    };

    voice.set_mode(Mode::Down);
    let down = post(&app, &staff, &path, &json!({})).await;
    assert_eq!(problem(down, 503).await["code"], "telephony_unavailable");
    // A provider that hangs is given up on within the request timeout.
    voice.set_mode(Mode::Slow(Duration::from_secs(30)));
    let started = Instant::now();
    let hung = post(&app, &staff, &path, &json!({})).await;
    assert_eq!(problem(hung, 503).await["code"], "telephony_unavailable");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded wait");
    // The task is where it was and the call can be placed once it is back.
    assert_eq!(task_status(&app, &staff, &id).await, "claimed");
    voice.set_mode(Mode::Up);
    let placed = post(&app, &staff, &path, &json!({})).await;
    assert_eq!(placed.status(), 201);
    app.stop().await;
}

/// Two staff members place the same task's call at once, the provider
/// slow to answer so that both requests are in flight together: the payer
/// is called once, the other request is refused before the provider is
/// asked, and the one call placed is the one recorded.
async fn racing_calls(backend: Backend, test: &str) {
    let voice = VoiceApi::start();
    voice.account(ACCOUNT, TOKEN);
    let Some(ReadyToCall {
        app,
        org,
        staff,
        id,
        path,
    }) = ready_to_call(backend, test, &voice).await
    else {
        return;
    };
    let other = app.token_as(&org, Role::Staff, "back-office");

    voice.set_mode(Mode::Slow(Duration::from_millis(800)));
    let empty = json!({});
    let (a, b) = tokio::join!(
        post(&app, &staff, &path, &empty),
        post(&app, &other, &path, &empty)
    );
    let (placed, refused) = if a.status() == 201 { (a, b) } else { (b, a) };
    assert_eq!(placed.status(), 201);
    assert_eq!(problem(refused, 409).await["code"], "call_in_progress");
    let sent = voice.placed();
    assert_eq!(sent.len(), 1, "the payer's phone rings once");
    let call: Value = placed.json().await.unwrap_or_default();
    assert_eq!(call["call_sid"].as_str(), Some(sent[0].sid.as_str()));
    voice.set_mode(Mode::Up);
    assert_eq!(
        status(&app, &org, TOKEN, &sent[0].sid, "in-progress").await,
        204
    );
    assert_eq!(task_status(&app, &staff, &id).await, "calling");
    app.stop().await;
}

#[tokio::test]
async fn two_requests_racing_to_call_for_one_task_place_one_call_sqlite() {
    racing_calls(Backend::Sqlite, "telephony_race::sqlite").await;
}

#[tokio::test]
async fn two_requests_racing_to_call_for_one_task_place_one_call_postgres() {
    racing_calls(Backend::Postgres, "telephony_race::postgres").await;
}

/// A reservation whose request was dropped between reserving the task's
/// call and recording it (a crash, a lost connection) holds the task for
/// two minutes at most; a younger one still refuses a second call.
#[tokio::test]
async fn an_abandoned_call_reservation_holds_the_task_only_so_long() {
    let voice = VoiceApi::start();
    voice.account(ACCOUNT, TOKEN);
    let Some(ReadyToCall {
        app, staff, path, ..
    }) = ready_to_call(Backend::Sqlite, "telephony_abandoned", &voice).await
    else {
        return;
    };
    let file = app.data_dir.with_file_name("carapace.db");
    let raw = sea_orm::Database::connect(format!("sqlite://{}", file.display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The database's only task, ids as it stores them.
    let reserve = |created: &str| {
        format!(
            "INSERT INTO telephony_calls (org_id, call_sid, task_id, state, placed_by, created_at, updated_at) \
             SELECT org_id, 'PL00000000000000000000000000000001', id, 'queued', 'front-desk', '{created}', '{created}' \
             FROM verification_tasks"
        )
    };
    use sea_orm::ConnectionTrait as _;

    // Reserved just now (its stamp in the future: younger than any bound).
    raw.execute_unprepared(&reserve("2999-01-01 00:00:00.0+00:00"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let held = post(&app, &staff, &path, &json!({})).await;
    assert_eq!(problem(held, 409).await["code"], "call_in_progress");
    assert!(voice.placed().is_empty());

    // Reserved long ago and never recorded nor released: dropped.
    raw.execute_unprepared(
        "UPDATE telephony_calls SET created_at = '2000-01-01 00:00:00.0+00:00' \
         WHERE call_sid = 'PL00000000000000000000000000000001'",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let placed = post(&app, &staff, &path, &json!({})).await;
    assert_eq!(placed.status(), 201);
    assert_eq!(voice.placed().len(), 1);
    let _ = raw.close().await;
    app.stop().await;
}
