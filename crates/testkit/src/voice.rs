//! A local stand-in for a Twilio-compatible voice API: it checks basic
//! auth, records the calls placed and the redirects, serves recordings the
//! test puts, records their deletion, and can be down or slow. With
//! [`signed_callback`] a test plays the provider's signed webhooks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normally.
    Up,
    /// 503 to everything.
    Down,
    /// After this long (a provider that hangs).
    Slow(Duration),
}

/// A call placed through the stand-in.
#[derive(Clone, Debug)]
pub struct Placed {
    /// The account in the path.
    pub account: String,
    /// The id it was given.
    pub sid: String,
    /// The form, in order.
    pub form: Vec<(String, String)>,
}

impl Placed {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    credentials: Mutex<HashMap<String, String>>,
    placed: Mutex<Vec<Placed>>,
    redirects: Mutex<Vec<(String, String)>>,
    recordings: Mutex<HashMap<String, Vec<u8>>>,
    deleted: Mutex<Vec<String>>,
    mode: Mutex<Option<Mode>>,
}

/// A running stand-in on 127.0.0.1.
#[derive(Clone)]
pub struct VoiceApi {
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    state: Arc<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn gate(state: &State, req: &HttpRequest, account: &str) -> Option<HttpResponse> {
    let mode = lock(&state.mode).unwrap_or(Mode::Up);
    match mode {
        Mode::Down => return Some(HttpResponse::ServiceUnavailable().finish()),
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Up => {}
    }
    let expected = lock(&state.credentials).get(account).cloned();
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_owned);
    use base64::Engine as _;
    let ok = expected.is_some_and(|token| {
        given
            == Some(base64::engine::general_purpose::STANDARD.encode(format!("{account}:{token}")))
    });
    (!ok).then(|| HttpResponse::Unauthorized().finish())
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn place(
    state: web::Data<State>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let account = path.into_inner();
    if let Some(refused) = gate(&state, &req, &account).await {
        return refused;
    }
    let sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    lock(&state.placed).push(Placed {
        account,
        sid: sid.clone(),
        form: form(&body),
    });
    HttpResponse::Created().json(serde_json::json!({"sid": sid, "status": "queued"}))
}

async fn redirect(
    state: web::Data<State>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (account, call) = path.into_inner();
    if let Some(refused) = gate(&state, &req, &account).await {
        return refused;
    }
    let Some(call) = call.strip_suffix(".json").map(str::to_owned) else {
        return HttpResponse::NotFound().finish();
    };
    let twiml = form(&body)
        .into_iter()
        .find(|(n, _)| n == "Twiml")
        .map(|(_, v)| v)
        .unwrap_or_default();
    lock(&state.redirects).push((call.clone(), twiml));
    HttpResponse::Ok().json(serde_json::json!({"sid": call}))
}

async fn recording(
    state: web::Data<State>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (account, file) = path.into_inner();
    if let Some(refused) = gate(&state, &req, &account).await {
        return refused;
    }
    let sid = file.trim_end_matches(".wav");
    match lock(&state.recordings).get(sid) {
        Some(audio) => HttpResponse::Ok()
            .content_type("audio/x-wav")
            .body(audio.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn delete(
    state: web::Data<State>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (account, file) = path.into_inner();
    if let Some(refused) = gate(&state, &req, &account).await {
        return refused;
    }
    let sid = file.trim_end_matches(".json").to_owned();
    if lock(&state.recordings).remove(&sid).is_none() {
        return HttpResponse::NotFound().finish();
    }
    lock(&state.deleted).push(sid);
    HttpResponse::NoContent().finish()
}

impl VoiceApi {
    /// Starts a stand-in (within a Tokio runtime).
    pub fn start() -> Self {
        let (listener, base) = crate::local_listener();
        let state = Arc::new(State::default());
        crate::serve(listener, state.clone(), |cfg| {
            cfg.route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                web::post().to(place),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                web::post().to(redirect),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Recordings/{file}",
                web::get().to(recording),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Recordings/{file}",
                web::delete().to(delete),
            );
        });
        Self { base, state }
    }

    /// Accepts account `sid` with `token`.
    pub fn account(&self, sid: &str, token: &str) {
        lock(&self.state.credentials).insert(sid.to_owned(), token.to_owned());
    }

    /// Answers as `mode` says from now on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.state.mode) = Some(mode);
    }

    /// Holds recording `sid` with `audio`.
    pub fn put_recording(&self, sid: &str, audio: Vec<u8>) {
        lock(&self.state.recordings).insert(sid.to_owned(), audio);
    }

    /// The calls placed so far.
    pub fn placed(&self) -> Vec<Placed> {
        lock(&self.state.placed).clone()
    }

    /// The redirects so far: call id and TwiML.
    pub fn redirects(&self) -> Vec<(String, String)> {
        lock(&self.state.redirects).clone()
    }

    /// The recordings deleted so far.
    pub fn deleted(&self) -> Vec<String> {
        lock(&self.state.deleted).clone()
    }

    /// Whether recording `sid` is still held.
    pub fn holds(&self, sid: &str) -> bool {
        lock(&self.state.recordings).contains_key(sid)
    }
}

/// POSTs the callback `params` to `url` as the provider does, signed with
/// `token` over `signed_url` (the public URL the server is configured
/// with; a test passes another to forge).
pub async fn signed_callback(
    http: &reqwest::Client,
    url: &str,
    signed_url: &str,
    token: &str,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let signature = carapace_infra::voice::sign(token, signed_url, &owned);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    http.post(url)
        .header("x-twilio-signature", signature)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("callback: {e}"))
}

/// A PCM WAV file of `seconds` of silence (8 kHz, 16-bit, mono).
pub fn wav(seconds: u32) -> Vec<u8> {
    carapace_infra::voice::silent_wav(seconds)
}
