use super::*;

fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

pub(super) async fn bearer_post(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(&body)).await
}

async fn mfa_login(app: &TestApp, org: &Org) -> String {
    let res = login(app, &org.slug, "doc@example.org", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    body["mfa_token"].as_str().unwrap_or_default().to_owned()
}

async fn mfa_flow(backend: Backend, test: &str) {
    let Some((app, org)) = setup(test, backend).await else {
        return;
    };
    let session = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let access = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let enrolled: Value = bearer_post(&app, "/api/v1/auth/mfa/totp/enroll", &access, json!({}))
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uri = enrolled["otpauth_uri"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        uri.starts_with("otpauth://totp/Carapace:doc%40example.org?"),
        "{uri}"
    );
    let totp = totp_rs::Totp::from_url(&uri).unwrap_or_else(|e| panic!("{e:?}"));

    // The seed is stored sealed, never as itself.
    let ctx = TenantContext::new(
        org.id,
        SubjectId::parse("test").unwrap_or_else(|e| panic!("{e}")),
    );
    let user_id = carapace_auth::local::UserId::from_uuid(
        uuid::Uuid::parse_str(claims_of(&access)["sub"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let stored = carapace_auth::local::mfa::MfaStore::totp_state(
        &SeaAccounts::new(app.db.clone()),
        &ctx,
        user_id,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|| panic!("pending enrolment"));
    let seed = totp.secret().as_bytes().to_vec();
    assert!(
        !stored
            .sealed_seed
            .windows(seed.len())
            .any(|w| w == seed.as_slice()),
        "seed is encrypted at rest"
    );

    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    problem(
        bearer_post(
            &app,
            "/api/v1/auth/mfa/totp/activate",
            &access,
            json!({"code": "000000"}),
        )
        .await,
        401,
    )
    .await;
    let activated: Value = bearer_post(
        &app,
        "/api/v1/auth/mfa/totp/activate",
        &access,
        json!({"code": totp.generate(now).to_string()}),
    )
    .await
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let recovery: Vec<String> = activated["recovery_codes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(recovery.len(), 10);
    problem(
        bearer_post(&app, "/api/v1/auth/mfa/totp/enroll", &access, json!({})).await,
        409,
    )
    .await;

    // Login now stops at a challenge; the challenge is not a bearer token.
    let challenge = mfa_login(&app, &org).await;
    problem(app.create_patient(&challenge, &patient("Nope")).await, 401).await;
    // The activation code's step is spent: replay refused.
    let replay = post(
        &app,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": challenge, "code": totp.generate(now).to_string()}),
    )
    .await;
    problem(replay, 401).await;
    let next = totp.generate(now + 30).to_string();
    let t = tokens(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": next}),
        )
        .await,
    )
    .await;
    let amr = claims_of(t["access_token"].as_str().unwrap_or_default())["amr"].clone();
    assert_eq!(amr, json!(["pwd", "mfa"]));
    // Refreshed sessions keep their MFA status.
    let refreshed = tokens(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        claims_of(refreshed["access_token"].as_str().unwrap_or_default())["amr"],
        json!(["pwd", "mfa"])
    );
    let challenge = mfa_login(&app, &org).await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": next}),
        )
        .await,
        401,
    )
    .await;

    // Recovery codes: each works once.
    let challenge = mfa_login(&app, &org).await;
    tokens(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": recovery[0].to_uppercase()}),
        )
        .await,
    )
    .await;
    let challenge = mfa_login(&app, &org).await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": recovery[0]}),
        )
        .await,
        401,
    )
    .await;
    tokens(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": challenge, "code": recovery[1]}),
        )
        .await,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn totp_enrol_activate_verify_replay_and_recovery_codes_on_sqlite() {
    mfa_flow(
        Backend::Sqlite,
        "totp_enrol_activate_verify_replay_and_recovery_codes_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn totp_enrol_activate_verify_replay_and_recovery_codes_on_postgres() {
    mfa_flow(
        Backend::Postgres,
        "totp_enrol_activate_verify_replay_and_recovery_codes_on_postgres",
    )
    .await;
}
