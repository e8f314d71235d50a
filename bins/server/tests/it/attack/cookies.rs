//! Cross-site requests against a cookie session, and bodies in media types
//! that merely look like JSON.
//!
//! A page on another origin can make the victim's browser send their
//! cookies, and an attacker who learnt the CSRF token (or a sibling page
//! that can read it) can echo it: the token alone is not enough. Every
//! unsafe cookie request also needs an `Origin` (or, without one, a
//! `Referer`) among the configured origins: none, another origin,
//! `null`, a look-alike host or a Referer from elsewhere is 403 and
//! changes nothing; the configured origin works. JSON endpoints take
//! `application/json` (a patient PATCH also `application/merge-patch+json`)
//! and nothing else: `text/json`, `application/json-patch+json`,
//! `application/vnd.api+json`, a form, none at all is 415 and writes
//! nothing.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::auth::{APP_ORIGIN, PASSWORD, cookie_header, set_cookies, user};
use crate::support::{Backend, TestApp, patient, problem, send, spawn_app_with};

/// A cookie session: the `Cookie` header and the CSRF token.
struct Session {
    jar: String,
    csrf: String,
}

async fn cookie_login(app: &TestApp, org: &str) -> Session {
    let res = send(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .header("origin", APP_ORIGIN)
            .json(&json!({
                "org": org, "email": "doc@example.org", "password": PASSWORD, "mode": "cookie"
            })),
    )
    .await;
    assert_eq!(res.status(), 200);
    session_of(res).await
}

async fn session_of(res: reqwest::Response) -> Session {
    let jar = cookie_header(&set_cookies(&res));
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    Session {
        jar,
        csrf: body["csrf_token"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Where an attacker's request says it comes from.
const CROSS_SITE: &[&[(&str, &str)]] = &[
    &[],
    &[("origin", "https://evil.example")],
    &[("origin", "null")],
    &[("referer", "https://evil.example/phish")],
    &[("origin", "https://app.example.org.evil.example")],
    &[("referer", "https://app.example.org.evil.example/")],
    &[("referer", "https://app.example.org@evil.example/")],
    &[("origin", "http://app.example.org")],
    &[("origin", "https://app.example.org:8443")],
    &[
        ("origin", "https://evil.example"),
        ("referer", "https://app.example.org/"),
    ],
];

/// `req` with the session's cookies and CSRF token, from `from`.
fn as_browser(
    req: reqwest::RequestBuilder,
    session: &Session,
    from: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut req = req
        .header("cookie", &session.jar)
        .header("x-csrf-token", &session.csrf);
    for (name, value) in from {
        req = req.header(*name, *value);
    }
    req
}

async fn refused(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), 403, "{what}");
    assert_eq!(problem(res, 403).await["code"], "csrf_failed", "{what}");
}

async fn patients_seen(app: &TestApp, session: &Session) -> usize {
    let res = send(
        app.http
            .get(app.url("/api/v1/patients"))
            .header("cookie", &session.jar),
    )
    .await;
    assert_eq!(res.status(), 200, "a safe read needs no origin");
    let page: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    page["items"].as_array().map_or(0, Vec::len)
}

async fn cross_site_requests_are_refused(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, |s| {
        s.cors_origins = format!("{APP_ORIGIN},http://localhost:3000");
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    let session = cookie_login(&app, &org.slug).await;

    for from in CROSS_SITE {
        let what = format!("create from {from:?}");
        let post = app.http.post(app.url("/api/v1/patients"));
        let res = send(as_browser(post, &session, from).json(&patient("Mallory"))).await;
        refused(res, &what).await;
    }
    assert_eq!(
        patients_seen(&app, &session).await,
        0,
        "nothing was written"
    );
    // The CSRF token is still needed from the right origin.
    let wrong_token = app
        .http
        .post(app.url("/api/v1/patients"))
        .header("cookie", &session.jar)
        .header("x-csrf-token", "not-the-token")
        .header("origin", APP_ORIGIN)
        .json(&patient("Mallory"));
    refused(send(wrong_token).await, "wrong token, right origin").await;

    // From the app's page (Origin, or only a Referer): it works.
    let post = app.http.post(app.url("/api/v1/patients"));
    let created =
        send(as_browser(post, &session, &[("origin", APP_ORIGIN)]).json(&patient("Ada"))).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let post = app.http.post(app.url("/api/v1/patients"));
    let referred = as_browser(
        post,
        &session,
        &[("referer", "https://app.example.org/patients/new?step=2")],
    );
    assert_eq!(send(referred.json(&patient("Bea"))).await.status(), 201);
    let post = app.http.post(app.url("/api/v1/patients"));
    let other_app = as_browser(post, &session, &[("origin", "http://localhost:3000")]);
    assert_eq!(send(other_app.json(&patient("Cy"))).await.status(), 201);

    // PATCH and DELETE from elsewhere change nothing.
    let record = format!("/api/v1/patients/{id}");
    for from in CROSS_SITE {
        let patch = app.http.patch(app.url(&record));
        let res = send(as_browser(patch, &session, from).json(&json!({"given_name": "Eve"}))).await;
        refused(res, &format!("patch from {from:?}")).await;
        let delete = app.http.delete(app.url(&record));
        refused(
            send(as_browser(delete, &session, from)).await,
            &format!("delete from {from:?}"),
        )
        .await;
    }
    let read = send(
        app.http
            .get(app.url(&record))
            .header("cookie", &session.jar),
    )
    .await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap_or_default();
    assert_eq!(read["given_name"], "Ada", "unchanged and not deleted");
    assert_eq!(patients_seen(&app, &session).await, 3);

    // Refresh and logout in cookie mode: the same rule.
    for from in CROSS_SITE {
        let refresh = app.http.post(app.url("/api/v1/auth/refresh"));
        let res = send(as_browser(refresh, &session, from).json(&json!({}))).await;
        refused(res, &format!("refresh from {from:?}")).await;
        let logout = app.http.post(app.url("/api/v1/auth/logout"));
        let res = send(as_browser(logout, &session, from).json(&json!({}))).await;
        refused(res, &format!("logout from {from:?}")).await;
    }
    let refresh = app.http.post(app.url("/api/v1/auth/refresh"));
    let refreshed =
        send(as_browser(refresh, &session, &[("origin", APP_ORIGIN)]).json(&json!({}))).await;
    assert_eq!(refreshed.status(), 200, "the session survived the attempts");
    let session = session_of(refreshed).await;
    let logout = app.http.post(app.url("/api/v1/auth/logout"));
    let out = send(as_browser(logout, &session, &[("origin", APP_ORIGIN)]).json(&json!({}))).await;
    assert_eq!(out.status(), 204);
    app.stop().await;
}

#[tokio::test]
async fn cross_site_cookie_requests_are_refused_on_sqlite() {
    cross_site_requests_are_refused(Backend::Sqlite, "attack_cookies_cross_site_sqlite").await;
}

#[tokio::test]
async fn cross_site_cookie_requests_are_refused_on_postgres() {
    cross_site_requests_are_refused(Backend::Postgres, "attack_cookies_cross_site_postgres").await;
}

#[tokio::test]
async fn with_no_configured_origin_no_cookie_request_is_trusted() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "attack_cookies_no_origins", |_| {}).await
    else {
        return;
    };
    let org = app.org().await;
    user(&app, &org, "doc@example.org", Role::Clinician).await;
    // Not even a cookie session starts, from any origin or none.
    for from in [Some(APP_ORIGIN), Some("null"), None] {
        let mut login = app.http.post(app.url("/api/v1/auth/login"));
        if let Some(o) = from {
            login = login.header("origin", o);
        }
        let res = send(login.json(&json!({
            "org": org.slug, "email": "doc@example.org", "password": PASSWORD, "mode": "cookie"
        })))
        .await;
        assert!(set_cookies(&res).is_empty(), "{from:?}");
        refused(res, &format!("{from:?}")).await;
    }
    app.stop().await;
}

/// Sends `body` to `path` with `method` as `token`, with these
/// `Content-Type` headers (none for an empty list).
async fn with_types(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    types: &[&str],
    body: &Value,
) -> reqwest::Response {
    let mut req = app
        .http
        .request(method, app.url(path))
        .bearer_auth(token)
        .body(serde_json::to_vec(body).unwrap_or_default());
    for t in types {
        req = req.header("content-type", *t);
    }
    send(req).await
}

#[tokio::test]
async fn json_endpoints_take_application_json_only() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "attack_json_media_types", |_| {}).await else {
        return;
    };
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    let refused_types: &[&[&str]] = &[
        &["text/json"],
        &["application/json-patch+json"],
        &["application/vnd.api+json"],
        &["application/x-www-form-urlencoded"],
        &["text/plain"],
        &[],
        &["application/merge-patch+json"],
        &["application/json; charset=utf-16"],
        &["application/jsonp"],
        &["application/json", "text/plain"],
    ];
    for types in refused_types {
        let res = with_types(
            &app,
            reqwest::Method::POST,
            "/api/v1/patients",
            &token,
            types,
            &patient("Mallory"),
        )
        .await;
        problem(res, 415).await;
        // The authentication routes read their bodies the same way.
        let login = with_types(
            &app,
            reqwest::Method::POST,
            "/api/v1/auth/login",
            "",
            types,
            &json!({"org": org.slug, "email": "doc@example.org", "password": PASSWORD}),
        )
        .await;
        assert_eq!(login.status(), 415, "login as {types:?}");
    }
    assert!(app.all_patients(&token).await.is_empty(), "nothing created");

    for (n, t) in [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
    ]
    .into_iter()
    .enumerate()
    {
        let res = with_types(
            &app,
            reqwest::Method::POST,
            "/api/v1/patients",
            &token,
            &[t],
            &patient(&format!("Ok{n}")),
        )
        .await;
        assert_eq!(res.status(), 201, "{t}");
    }
    let patients = app.all_patients(&token).await;
    assert_eq!(patients.len(), 3);
    let id = patients[0]["id"].as_str().unwrap_or_default().to_owned();

    // The patient PATCH is a JSON merge patch: it documents and takes
    // application/merge-patch+json as well; a JSON Patch is not one.
    let record = format!("/api/v1/patients/{id}");
    for t in [
        "application/json-patch+json",
        "text/json",
        "application/x-www-form-urlencoded",
    ] {
        let res = with_types(
            &app,
            reqwest::Method::PATCH,
            &record,
            &token,
            &[t],
            &json!({"given_name": "Eve"}),
        )
        .await;
        problem(res, 415).await;
    }
    for (t, name) in [
        ("application/merge-patch+json", "Mae"),
        ("application/json", "Jay"),
    ] {
        let res = with_types(
            &app,
            reqwest::Method::PATCH,
            &record,
            &token,
            &[t],
            &json!({"given_name": name}),
        )
        .await;
        assert_eq!(res.status(), 200, "{t}");
        let body: Value = res.json().await.unwrap_or_default();
        assert_eq!(body["given_name"], name);
    }
    let openapi: Value = app
        .get_public("/openapi.json")
        .await
        .json()
        .await
        .unwrap_or_default();
    let content = &openapi["paths"]["/api/v1/patients/{id}"]["patch"]["requestBody"]["content"];
    assert!(
        content.get("application/merge-patch+json").is_some(),
        "{content}"
    );
    app.stop().await;
}
