//! What the attack tests share: accounts, logins from chosen addresses
//! (the test client is a trusted proxy, so `X-Forwarded-For` names the
//! client), the mail outbox, TOTP enrolment, and a way to run one scenario
//! on both databases with adjusted settings.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::support::{Org, TestApp, send};

pub(crate) use crate::auth::PASSWORD;

/// Settings every attack scenario starts from: the test client (loopback)
/// is a trusted proxy, so each request may say which client it forwards.
pub(crate) fn proxied(s: &mut carapace_server::settings::Settings) {
    s.trusted_proxies = "127.0.0.1".into();
}

/// Settings as they come (for [`on_both`]).
pub(crate) fn defaults(_: &mut carapace_server::settings::Settings) {}

/// Runs the scenario `async fn $name(app: &TestApp)` on SQLite and, when
/// configured, on PostgreSQL, each on a fresh app whose settings
/// `$configure` adjusted (tests `$name::sqlite` and `$name::postgres`).
macro_rules! on_both {
    ($name:ident, $configure:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let app = $crate::support::spawn_app_with(
                    $crate::support::Backend::Sqlite,
                    concat!(module_path!(), "::sqlite"),
                    $configure,
                )
                .await;
                if let Some(app) = app {
                    super::$name(&app).await;
                    app.stop().await;
                }
            }

            #[tokio::test]
            async fn postgres() {
                let app = $crate::support::spawn_app_with(
                    $crate::support::Backend::Postgres,
                    concat!(module_path!(), "::postgres"),
                    $configure,
                )
                .await;
                if let Some(app) = app {
                    super::$name(&app).await;
                    app.stop().await;
                }
            }
        }
    };
}
pub(crate) use on_both;

/// Client addresses of one test: a random `10.x.y.0/24`, so that tests
/// sharing a database (PostgreSQL: one per run) never share an address's
/// failure count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Net(u8, u8);

impl Net {
    /// A fresh network.
    pub(crate) fn random() -> Self {
        let [a, b]: [u8; 2] = rand::random();
        Self(a, b)
    }

    /// Its `n`-th address.
    pub(crate) fn at(self, n: u8) -> String {
        format!("10.{}.{}.{n}", self.0, self.1)
    }
}

/// The security events of `org`'s audit trail (as a compliance officer
/// reads them), oldest first.
pub(crate) async fn security_trail(app: &TestApp, org: &Org) -> Vec<Value> {
    let token = app.token_as(org, Role::Compliance, "compliance-officer");
    let mut items = Vec::new();
    let mut path = "/api/v1/audit-events?resource_type=security&limit=500".to_owned();
    loop {
        let page = ok_json(app.get(&path, &token).await).await;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => {
                path = format!("/api/v1/audit-events?resource_type=security&limit=500&cursor={c}")
            }
            None => return items,
        }
    }
}

/// The events of `action` (`security.<kind>`) in a trail.
pub(crate) fn of<'a>(trail: &'a [Value], action: &str) -> Vec<&'a Value> {
    trail.iter().filter(|e| e["action"] == action).collect()
}

/// Creates a local account with [`PASSWORD`] and returns its id.
pub(crate) async fn account(app: &TestApp, org: &Org, email: &str, role: Role) -> String {
    crate::auth::user(app, org, email, role).await
}

/// A password login forwarded for `client`.
pub(crate) async fn login_from(
    app: &TestApp,
    org: &Org,
    email: &str,
    password: &str,
    client: &str,
) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", client)
            .json(&json!({"org": org.slug, "email": email, "password": password})),
    )
    .await
}

/// A JSON POST, with a bearer token when given.
pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = app.http.post(app.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send(req).await
}

/// The body of a 200, as JSON.
pub(crate) async fn ok_json(res: reqwest::Response) -> Value {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    body
}

/// A string field of a JSON body.
pub(crate) fn text(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_default().to_owned()
}

/// Every mail in the app's outbox, oldest first.
pub(crate) fn mails(app: &TestApp) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(app.data_dir.join("outbox"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}

/// Waits until the outbox holds `n` mails (reset requests are answered
/// before the mail goes out) and returns them.
pub(crate) async fn mails_when(app: &TestApp, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let all = mails(app);
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("expected {n} mails, found {}", mails(app).len());
}

/// The reset code (`crr_…`) in a mail, if any.
pub(crate) fn reset_code(mail: &str) -> Option<String> {
    let start = mail.find("crr_")?;
    mail[start..].split_whitespace().next().map(str::to_owned)
}

/// Asks for a reset code for `email` and returns the code mailed, after
/// `before` mails were already in the outbox.
pub(crate) async fn request_reset(app: &TestApp, org: &Org, email: &str, before: usize) -> String {
    let res = post(
        app,
        "/api/v1/auth/password-reset/request",
        None,
        json!({"org": org.slug, "email": email}),
    )
    .await;
    assert_eq!(res.status(), 202);
    let all = mails_when(app, before + 1).await;
    reset_code(&all[before]).unwrap_or_else(|| panic!("no code in {}", all[before]))
}

/// Enrols and activates TOTP with `access`: the generator and the
/// recovery codes.
pub(crate) async fn enable_totp(app: &TestApp, access: &str) -> (totp_rs::Totp, Vec<String>) {
    let enrolled =
        ok_json(post(app, "/api/v1/auth/mfa/totp/enroll", Some(access), json!({})).await).await;
    let totp =
        totp_rs::Totp::from_url(text(&enrolled, "otpauth_uri")).unwrap_or_else(|e| panic!("{e:?}"));
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let activated = ok_json(
        post(
            app,
            "/api/v1/auth/mfa/totp/activate",
            Some(access),
            json!({"code": totp.generate(now).to_string()}),
        )
        .await,
    )
    .await;
    let recovery = activated["recovery_codes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (totp, recovery)
}

/// The users list as the admin `token` sees it: the entry of `id`.
pub(crate) async fn user_view(app: &TestApp, token: &str, id: &str) -> Value {
    let list = ok_json(app.get("/api/v1/users", token).await).await;
    list.as_array()
        .and_then(|a| a.iter().find(|u| u["id"] == id).cloned())
        .unwrap_or_else(|| panic!("user {id} not in {list}"))
}
