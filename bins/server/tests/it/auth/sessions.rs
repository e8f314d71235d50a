use super::*;

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_on_unsafe_methods() {
    // Unsafe cookie requests also need a configured Origin (attack::cookies
    // tries the others).
    let Some(app) = crate::support::spawn_app_with(
        Backend::Sqlite,
        "cookie_sessions_need_the_csrf_token_on_unsafe_methods",
        |s| s.cors_origins = APP_ORIGIN.into(),
    )
    .await
    else {
        return;
    };
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    let cookie_login = json!({
        "org": org.slug, "email": "doc@example.org", "password": PASSWORD, "mode": "cookie"
    });
    // Login CSRF: another site's page (or none) cannot start a cookie
    // session, and the attempt costs the account nothing.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let mut req = app
            .http
            .post(app.url("/api/v1/auth/login"))
            .json(&cookie_login);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let refused = send(req).await;
        assert_eq!(refused.status(), 403, "{origin:?}");
        assert!(set_cookies(&refused).is_empty(), "{origin:?}");
        assert_eq!(problem(refused, 403).await["code"], "csrf_failed");
    }
    let res = send(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .header("origin", APP_ORIGIN)
            .json(&cookie_login),
    )
    .await;
    assert_eq!(res.status(), 200);
    let cookies = set_cookies(&res);
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "no tokens for scripts"
    );
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
    let names: Vec<&str> = cookies.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "__Host-carapace_session",
            "__Host-carapace_refresh",
            "__Host-carapace_csrf"
        ]
    );
    for (name, _, attrs) in &cookies {
        assert!(
            attrs.contains("Secure")
                && attrs.contains("Path=/")
                && attrs.contains("SameSite=Strict"),
            "{name}: {attrs}"
        );
        assert!(!attrs.contains("Domain"), "{name}");
        assert_eq!(
            attrs.contains("HttpOnly"),
            name != "__Host-carapace_csrf",
            "{name}: {attrs}"
        );
    }
    let jar = cookie_header(&cookies);

    // Safe methods need no CSRF token.
    let list = send(
        app.http
            .get(app.url("/api/v1/patients"))
            .header("cookie", &jar),
    )
    .await;
    assert_eq!(list.status(), 200);
    // Unsafe methods do: missing or wrong is 403, and nothing is written.
    let post = |csrf: Option<&str>| {
        let mut req = app
            .http
            .post(app.url("/api/v1/patients"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .json(&patient("Cora"));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        send(req)
    };
    assert_eq!(problem(post(None).await, 403).await["code"], "csrf_failed");
    problem(post(Some("not-the-token")).await, 403).await;
    assert_eq!(post(Some(&csrf)).await.status(), 201);

    // Refresh from the cookie (CSRF required), then log out (cookies cleared).
    let no_csrf = send(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .json(&json!({})),
    )
    .await;
    problem(no_csrf, 403).await;
    let refreshed = send(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .header("x-csrf-token", &csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(refreshed.status(), 200);
    let rotated = set_cookies(&refreshed);
    assert_eq!(rotated.len(), 3);
    let new_csrf = refreshed.json::<Value>().await.unwrap_or_default()["csrf_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let jar = cookie_header(&rotated);
    let out = send(
        app.http
            .post(app.url("/api/v1/auth/logout"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .header("x-csrf-token", &new_csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(out.status(), 204);
    assert!(
        set_cookies(&out)
            .iter()
            .all(|(_, v, attrs)| v.is_empty() && attrs.contains("Max-Age=0"))
    );
    let after = send(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", &jar)
            .header("origin", APP_ORIGIN)
            .header("x-csrf-token", &new_csrf)
            .json(&json!({})),
    )
    .await;
    problem(after, 401).await;
    app.stop().await;
}

/// `carapace org delete` (its storage half): every session and service key
/// of the organization ends with it, so no token of its still works, not
/// even on routes that read no PHI.
async fn deleting_an_org_ends_its_sessions(backend: Backend, test: &str) {
    let Some((app, org)) = setup(test, backend).await else {
        return;
    };
    let other = app.org().await;
    user(&app, &other, "doc@example.org", Role::Clinician).await;
    let t = tokens(login(&app, &org.slug, "doc@example.org", PASSWORD).await).await;
    let kept = tokens(login(&app, &other.slug, "doc@example.org", PASSWORD).await).await;
    let access = t["access_token"].as_str().unwrap_or_default().to_owned();
    app.new_patient(&access, "Lena").await;

    let ctx = TenantContext::new(
        org.id,
        SubjectId::parse("system:org-delete").unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        carapace_infra::SeaOrganizations::new(app.db.clone())
            .mark_deleted(&ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );

    problem(app.get("/api/v1/patients", &access).await, 401).await;
    problem(
        bearer_post(&app, "/api/v1/auth/mfa/totp/enroll", &access, json!({})).await,
        401,
    )
    .await;
    problem(
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await,
        401,
    )
    .await;
    problem(
        login(&app, &org.slug, "doc@example.org", PASSWORD).await,
        401,
    )
    .await;
    // The other organization carries on.
    let other_access = kept["access_token"].as_str().unwrap_or_default();
    assert_eq!(
        app.get("/api/v1/patients", other_access).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn deleting_an_org_ends_its_sessions_on_sqlite() {
    deleting_an_org_ends_its_sessions(
        Backend::Sqlite,
        "deleting_an_org_ends_its_sessions_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn deleting_an_org_ends_its_sessions_on_postgres() {
    deleting_an_org_ends_its_sessions(
        Backend::Postgres,
        "deleting_an_org_ends_its_sessions_on_postgres",
    )
    .await;
}
