//! Rate limits cannot be dodged by spelling a path differently. The
//! attacker sends every spelling of each authentication route (and the
//! calendar feed, which takes only a token) they can
//! think of (percent-encoding of any character, upper- or lower-case hex,
//! doubled slashes, a trailing slash, `;` parameters, dot segments, case
//! variants, a query, the absolute form), raw, so the server sees exactly
//! that. Whatever spelling reaches a handler (does not answer 404) is
//! charged to the one per-address quota: after the burst, 429 with
//! `Retry-After`, and the canonical path from that address is limited too.
//! The same holds for the `ai` class on the assistant.

use std::collections::BTreeSet;

use carapace_auth::Role;
use serde_json::json;

use super::raw::{self, Answer};
use crate::support::{Backend, TestApp, send, spawn_app_with};

/// Requests an address (or principal) may make at once.
const BURST: u32 = 2;

/// Each route that takes a secret without credentials, its method and a
/// body it answers (401, 202 for the reset request, 422 for the calendar
/// feed without a token: never 404) without any account.
const ROUTES: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/api/v1/auth/login",
        r#"{"org":"no-such-org","email":"nobody@example.org","password":"not the password!"}"#,
    ),
    (
        "POST",
        "/api/v1/auth/mfa/verify",
        r#"{"mfa_token":"not-a-challenge","code":"123456"}"#,
    ),
    (
        "POST",
        "/api/v1/auth/refresh",
        r#"{"refresh_token":"crt_not_a_refresh_token"}"#,
    ),
    (
        "POST",
        "/api/v1/auth/password-reset/request",
        r#"{"org":"no-such-org","email":"nobody@example.org"}"#,
    ),
    (
        "POST",
        "/api/v1/auth/password-reset/confirm",
        r#"{"token":"crr_not_a_reset_code","new_password":"a brand new passphrase"}"#,
    ),
    // Only a token in its URL: no one tries tokens (or loads the
    // database) without limit.
    ("GET", "/api/v1/calendar.ics", ""),
];

fn encode(b: u8, upper: bool) -> String {
    if upper {
        format!("%{b:02X}")
    } else {
        format!("%{b:02x}")
    }
}

/// `path` with the byte at `i` percent-encoded.
fn encoded_at(path: &str, i: usize, upper: bool) -> String {
    format!(
        "{}{}{}",
        &path[..i],
        encode(path.as_bytes()[i], upper),
        &path[i + 1..]
    )
}

/// Every spelling of `path` tried (the path itself included).
fn spellings(path: &str, authority: &str) -> BTreeSet<String> {
    let bytes = path.as_bytes();
    let mut out = BTreeSet::new();
    out.insert(path.to_owned());
    // One character percent-encoded, each in turn, lower- and upper-case
    // hex (all but the leading slash: a request target starts with one).
    for i in 1..bytes.len() {
        for upper in [false, true] {
            out.insert(encoded_at(path, i, upper));
        }
    }
    // Everything but the slashes encoded at once; then every byte but the
    // leading slash.
    for upper in [false, true] {
        let keep_slashes: String = bytes
            .iter()
            .map(|&b| {
                if b == b'/' {
                    "/".to_owned()
                } else {
                    encode(b, upper)
                }
            })
            .collect();
        out.insert(keep_slashes);
        let every: String = bytes[1..].iter().map(|&b| encode(b, upper)).collect();
        out.insert(format!("/{every}"));
    }
    for (i, _) in path.match_indices('/') {
        let (before, after) = path.split_at(i);
        // A doubled slash anywhere.
        out.insert(format!("{before}/{after}"));
        // Dot segments, plain and encoded.
        out.insert(format!("{before}/.{after}"));
        out.insert(format!("{before}/%2e{after}"));
        out.insert(format!("{before}/x/..{after}"));
        // A `;` parameter on the segment that ends here.
        if i > 0 {
            out.insert(format!("{before};x=1{after}"));
        }
    }
    for suffix in [";x=1", ";", "/", "//", "/.", "?", "?x=1"] {
        out.insert(format!("{path}{suffix}"));
    }
    // Case variants: all of it, each segment, the last segment's initial.
    out.insert(path.to_ascii_uppercase());
    let segments: Vec<&str> = path.split('/').collect();
    for n in 1..segments.len() {
        let variant: Vec<String> = segments
            .iter()
            .enumerate()
            .map(|(m, s)| {
                if m == n {
                    s.to_ascii_uppercase()
                } else {
                    (*s).to_owned()
                }
            })
            .collect();
        out.insert(variant.join("/"));
    }
    if let Some(i) = path.rfind('/') {
        let mut last = path[i + 1..].to_owned();
        if let Some(first) = last.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        out.insert(format!("{}/{last}", &path[..i]));
        // The absolute form, plain and with an encoded character.
        out.insert(format!("http://{authority}{path}"));
        out.insert(format!(
            "http://{authority}{}",
            encoded_at(path, i + 1, false)
        ));
    }
    out
}

/// A fresh client address for each spelling (the peer is a trusted proxy).
fn address(n: usize) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

fn assert_limited(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 429, "{what}: {answer:?}");
    assert!(
        answer
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "{what}: Retry-After: {answer:?}"
    );
    assert!(answer.body.contains("rate_limited"), "{what}: {answer:?}");
}

/// Sends `spelling` until the burst must be spent and checks that no more
/// than the burst was answered; then the canonical `path` with the same
/// `headers` (address or principal) is limited too: one quota. Returns
/// whether the spelling reached a handler (did not answer 404).
async fn charged_like_the_route(
    app: &TestApp,
    method: &str,
    spelling: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> bool {
    let first = raw::send(app, method, spelling, headers, body).await;
    if first.status == 404 {
        // Never routed: it must never reach a handler either.
        let again = raw::send(app, method, spelling, headers, body).await;
        assert_eq!(again.status, 404, "{spelling}: {again:?}");
        return false;
    }
    assert!(
        (200..500).contains(&first.status) && first.status != 429,
        "{spelling}: the first try of a fresh quota: {first:?}"
    );
    let mut answered = 1;
    for _ in 0..BURST + 2 {
        let answer = raw::send(app, method, spelling, headers, body).await;
        if answer.status == 429 {
            assert_limited(&answer, spelling);
        } else {
            answered += 1;
        }
    }
    assert!(
        answered <= BURST,
        "{spelling}: {answered} answers past a burst of {BURST}"
    );
    let canonical = raw::send(app, method, path, headers, body).await;
    assert_limited(
        &canonical,
        &format!("{path} after {spelling} spent the quota"),
    );
    true
}

#[tokio::test]
async fn every_spelling_that_reaches_a_credential_free_handler_is_charged_to_the_address() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "attack_rate_limit_paths", |s| {
        s.rate_limit_auth_per_minute = 1;
        s.rate_limit_auth_burst = BURST;
        s.trusted_proxies = "127.0.0.1".into();
    })
    .await
    else {
        return;
    };
    let authority = app.base.trim_start_matches("http://").to_owned();
    let mut n = 0;
    for (method, path, body) in ROUTES {
        let mut reached = Vec::new();
        for spelling in spellings(path, &authority) {
            n += 1;
            let ip = address(n);
            let headers = [
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", ip.as_str()),
            ];
            if charged_like_the_route(&app, method, &spelling, path, &headers, body).await {
                reached.push(spelling);
            }
        }
        // The attack's spellings do reach the handler: the test does not
        // pass merely because the router refused everything.
        let must = [
            (*path).to_owned(),
            encoded_at(path, 13, false),
            encoded_at(path, 13, true),
            encoded_at(path, 8, false),
            format!("{path}?x=1"),
        ];
        for m in must {
            assert!(reached.contains(&m), "{m} reached {path}: {reached:?}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn assistant_spellings_are_charged_to_the_ai_class() {
    let Some(app) = spawn_app_with(Backend::Sqlite, "attack_rate_limit_ai_paths", |s| {
        s.ai_provider = "local".into();
        s.ai_baa_signed = true;
        s.rate_limit_ai_per_minute = 1;
        s.rate_limit_ai_burst = BURST;
    })
    .await
    else {
        return;
    };
    let org = app.org().await;
    let res = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(app.token(&org, Role::Admin))
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": true})),
    )
    .await;
    assert_eq!(res.status(), 200);
    // Organization settings are remembered for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let path = "/api/v1/assistant/messages";
    let authority = app.base.trim_start_matches("http://").to_owned();
    let mut reached = Vec::new();
    for (n, spelling) in spellings(path, &authority).into_iter().enumerate() {
        // Each spelling gets a principal of its own (authenticated
        // requests are charged to the principal).
        let token = app.token_as(&org, Role::Clinician, &format!("ai-{n}"));
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str())];
        if charged_like_the_route(&app, "GET", &spelling, path, &headers, "").await {
            reached.push(spelling);
        }
    }
    for must in [
        "/api/v1/%61ssistant/messages",
        "/api/v1/assistant/%6Dessages",
    ] {
        assert!(reached.iter().any(|r| r == must), "{must}: {reached:?}");
    }
    // The rest of the API is another class, still open to them.
    let token = app.token_as(&org, Role::Clinician, "ai-0");
    assert_eq!(app.get("/api/v1/patients", &token).await.status(), 200);
    app.stop().await;
}
