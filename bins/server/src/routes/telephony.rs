//! Telephony: the organization's provider account (administrators), the
//! payer call of a verification task (staff place it, the bot escalates
//! it), its recordings (staff list and play them, every play audited), and
//! the provider's callbacks, which carry no bearer token: each is verified
//! against the organization's auth token over the configured public URL
//! before anything else ([`carapace_clinical::telephony::Line::receive`]).

use actix_web::{HttpRequest, HttpResponse, web};
use carapace_audit::{Access, ActorKind};
use carapace_clinical::FieldError;
use carapace_clinical::assistant::Availability;
use carapace_clinical::telephony::{
    self, AccountInput, CallbackKind, Callbacks, Inbound, Line, ProviderSid, Telephony as _,
    TelephonyAccount, WebhookRefusal,
};
use carapace_clinical::verification::TaskId;
use carapace_tenancy::{OrgId, OrganizationRepository as _, SubjectId, TenantContext};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::Authorized;
use crate::http::error::Problem;
use crate::http::extract::JsonBody;
use crate::http::{ApiError, Reply};
use crate::routes::problems;
use crate::state::{AppState, State, Voice};

/// Largest callback body, in bytes.
const CALLBACK_BYTES_MAX: usize = 16 * 1024;

/// Registers the routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/organization/telephony")
            .route(web::get().to(account))
            .route(web::put().to(put_account)),
    )
    .service(web::resource("/verification-tasks/{id}/call").route(web::post().to(call)))
    .service(web::resource("/verification-tasks/{id}/escalate").route(web::post().to(escalate)))
    .service(web::resource("/verification-tasks/{id}/recordings").route(web::get().to(recordings)))
    .service(
        web::resource("/verification-tasks/{id}/recordings/{recording}").route(web::get().to(play)),
    )
    .service(web::resource("/telephony/{org}/status").route(web::post().to(status_callback)))
    .service(web::resource("/telephony/{org}/recording").route(web::post().to(recording_callback)))
    .service(web::resource("/telephony/{org}/voice").route(web::post().to(inbound_call)))
    .service(
        web::resource("/telephony/{org}/reminders/{reminder}/answer")
            .route(web::post().to(reminder_answer)),
    )
    .service(web::resource("/telephony/{org}/voicemail").route(web::post().to(voicemail_callback)));
}

fn voice(state: &AppState) -> Result<&Voice, ApiError> {
    state.voice.as_ref().ok_or(ApiError::Clash {
        code: "telephony_not_configured",
        detail: "this deployment has no voice API (CARAPACE_VOICE_URL)",
    })
}

/// The organization's provider account as administrators see it: never
/// the auth token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    #[schema(example = "AC0123456789abcdef0123456789abcdef")]
    account_sid: String,
    #[schema(example = "+16175550100")]
    caller_number: String,
    #[schema(example = "wss://bot.clinic.example/media")]
    bot_stream_url: String,
    front_desk_number: Option<String>,
    call_from_hour: u8,
    call_until_hour: u8,
    /// Always true: a token is set (it is never shown).
    auth_token_set: bool,
}

impl From<TelephonyAccount> for AccountView {
    fn from(a: TelephonyAccount) -> Self {
        Self {
            account_sid: a.account_sid.to_string(),
            caller_number: a.caller_number,
            bot_stream_url: a.bot_stream_url,
            front_desk_number: a.front_desk_number,
            call_from_hour: a.calling_hours.from,
            call_until_hour: a.calling_hours.until,
            auth_token_set: true,
        }
    }
}

/// The account to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    #[schema(example = "AC0123456789abcdef0123456789abcdef", max_length = 64)]
    account_sid: String,
    /// 16 to 128 visible ASCII characters; sealed at rest, never shown.
    #[schema(max_length = 128)]
    auth_token: String,
    /// E.164.
    #[schema(example = "+16175550100", max_length = 16)]
    caller_number: String,
    /// The bot's media-stream endpoint.
    #[schema(example = "wss://bot.clinic.example/media", max_length = 500)]
    bot_stream_url: String,
    /// Where a reminder call's key 3 goes (E.164); none: the caller is
    /// asked to call the clinic.
    #[schema(example = "+16175550111", max_length = 16)]
    front_desk_number: Option<String>,
    /// First hour reminder calls may ring, in the appointment's zone
    /// (default 9).
    #[schema(maximum = 23)]
    call_from_hour: Option<u8>,
    /// Hour they stop (default 18).
    #[schema(minimum = 1, maximum = 24)]
    call_until_hour: Option<u8>,
}

/// The organization's telephony account (administrators).
#[utoipa::path(get, operation_id = "telephony_account_get", path = "/api/v1/organization/telephony", tag = "telephony",
    responses((status = 200, body = AccountView), (status = 404, description = "no account set", body = Problem, content_type = "application/problem+json")))]
pub async fn account(auth: Authorized, state: State) -> Reply {
    use carapace_clinical::telephony::CallRepository as _;
    let found = state
        .calls
        .account(auth.access().tenant())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(AccountView::from(found)))
}

/// Sets the organization's telephony account (administrators).
#[utoipa::path(put, operation_id = "telephony_account_put", path = "/api/v1/organization/telephony", tag = "telephony",
    request_body = AccountBody,
    responses((status = 200, body = AccountView)))]
pub async fn put_account(auth: Authorized, state: State, body: JsonBody<AccountBody>) -> Reply {
    use carapace_clinical::telephony::CallRepository as _;
    let b = body.0;
    let parsed = AccountInput {
        account_sid: b.account_sid,
        auth_token: b.auth_token.into(),
        caller_number: b.caller_number,
        bot_stream_url: b.bot_stream_url,
        front_desk_number: b.front_desk_number,
        call_from_hour: b.call_from_hour,
        call_until_hour: b.call_until_hour,
    }
    .parse()?;
    state.calls.set_account(&auth.access(), &parsed).await?;
    Ok(HttpResponse::Ok().json(AccountView::from(parsed)))
}

/// A placed call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    /// The provider's call id.
    call_sid: String,
}

/// Places the payer call of a task a bot has claimed; the provider
/// connects it to the bot's media stream.
#[utoipa::path(post, operation_id = "verification_call", path = "/api/v1/verification-tasks/{id}/call", tag = "telephony",
    params(("id" = Uuid, Path, description = "task id")),
    responses(
        (status = 201, body = CallView),
        (status = 409, description = "not_claimed, call_in_progress or telephony_not_configured", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "telephony_unavailable: the provider did not answer; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn call(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    let voice = voice(&state)?;
    let access = auth.access();
    let org = access.org().as_uuid();
    let callbacks = Callbacks {
        status: Some(format!(
            "{}/api/v1/telephony/{org}/status",
            voice.public_url
        )),
        recording: Some(format!(
            "{}/api/v1/telephony/{org}/recording",
            voice.public_url
        )),
    };
    let sid = telephony::start_verification_call(
        &voice.api,
        &state.calls,
        &state.verifications,
        &access,
        id.into_inner(),
        &callbacks,
    )
    .await?;
    Ok(HttpResponse::Created().json(CallView {
        call_sid: sid.to_string(),
    }))
}

/// The bot hands the live call of its task to the organization's
/// supervisor (whose number it never sees).
#[utoipa::path(post, operation_id = "verification_escalate", path = "/api/v1/verification-tasks/{id}/escalate", tag = "telephony",
    params(("id" = Uuid, Path, description = "task id")),
    responses(
        (status = 204, description = "transferred"),
        (status = 409, description = "invalid_transition, no_call, no_supervisor or telephony_not_configured", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "telephony_unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn escalate(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    let voice = voice(&state)?;
    telephony::escalate(
        &voice.api,
        &state.calls,
        &state.verifications,
        &auth.access(),
        id.into_inner(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A stored recording (its audio is fetched separately).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingView {
    recording_sid: String,
    call_sid: String,
    duration_seconds: u32,
    /// When the provider's copy was deleted (null: not yet).
    deleted_at_provider: Option<String>,
    created_at: String,
    /// What was said (null where it could not be transcribed: no speech
    /// provider, or no agreements for one).
    transcript: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The recordings of a task's calls.
#[utoipa::path(get, operation_id = "verification_recordings", path = "/api/v1/verification-tasks/{id}/recordings", tag = "telephony",
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, body = [RecordingView])))]
pub async fn recordings(auth: Authorized, state: State, id: web::Path<TaskId>) -> Reply {
    let found = state
        .calls
        .recordings(&auth.access(), id.into_inner())
        .await?;
    let views: Vec<RecordingView> = found
        .into_iter()
        .map(|r| RecordingView {
            recording_sid: r.sid.to_string(),
            call_sid: r.call.to_string(),
            duration_seconds: r.duration_secs,
            deleted_at_provider: r.deleted_at_provider.map(rfc3339),
            created_at: rfc3339(r.created_at),
            transcript: r.transcript.map(|t| t.expose_phi().clone()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Plays one recording (WAV); every play is audited.
#[utoipa::path(get, operation_id = "verification_recording_play", path = "/api/v1/verification-tasks/{id}/recordings/{recording}", tag = "telephony",
    params(("id" = Uuid, Path, description = "task id"), ("recording" = String, Path, description = "recording id")),
    responses(
        (status = 200, description = "the audio", content_type = "audio/wav", body = Vec<u8>),
    ))]
pub async fn play(auth: Authorized, state: State, path: web::Path<(Uuid, String)>) -> Reply {
    let (id, recording) = path.into_inner();
    let sid = ProviderSid::parse(&recording).ok_or(ApiError::NotFound)?;
    let audio = state
        .calls
        .play(&auth.access(), TaskId::from_uuid(id), &sid)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("audio/wav")
        .body(audio.expose_phi().clone()))
}

/// A provider callback's form (the fields Carapace reads; the provider
/// sends more, all of them signed).
#[derive(Debug, Deserialize, ToSchema)]
#[expect(
    dead_code,
    reason = "documents the form in the OpenAPI document; the handler reads the raw pairs"
)]
pub struct CallbackForm {
    #[serde(rename = "CallSid")]
    #[schema(rename = "CallSid", max_length = 64)]
    call_sid: String,
    /// Status callbacks.
    #[serde(rename = "CallStatus")]
    #[schema(rename = "CallStatus", max_length = 20)]
    call_status: Option<String>,
    /// Recording callbacks.
    #[serde(rename = "RecordingSid")]
    #[schema(rename = "RecordingSid", max_length = 64)]
    recording_sid: Option<String>,
}

/// Which callback a request is: one of the provider's kinds, or the key
/// pressed on reminder call `reminder`.
#[derive(Clone, Copy)]
enum Target {
    Kind(CallbackKind),
    Answer(Uuid),
}

async fn callback(
    req: HttpRequest,
    state: State,
    org: Uuid,
    body: web::Bytes,
    target: Target,
) -> Reply {
    let voice = voice(&state).map_err(|_| ApiError::NotFound)?;
    if body.len() > CALLBACK_BYTES_MAX {
        return Err(ApiError::PayloadTooLarge);
    }
    let form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(ApiError::UnsupportedMediaType);
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    // The URL the provider was given: the configured public URL, the
    // organization's id as Carapace writes it and the query as received.
    let (kind, route) = match target {
        Target::Kind(CallbackKind::Status) => (CallbackKind::Status, "status".to_owned()),
        Target::Kind(CallbackKind::Recording) => (CallbackKind::Recording, "recording".to_owned()),
        Target::Kind(CallbackKind::Inbound) => (CallbackKind::Inbound, "voice".to_owned()),
        Target::Kind(CallbackKind::Voicemail) => (CallbackKind::Voicemail, "voicemail".to_owned()),
        Target::Answer(reminder) => (CallbackKind::Status, format!("reminders/{reminder}/answer")),
    };
    let org_url = format!("{}/api/v1/telephony/{org}", voice.public_url);
    let mut url = format!("{org_url}/{route}");
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let system = SubjectId::parse("system:telephony")
        .map_err(|_| ApiError::Internal("static subject".into()))?;
    let access = Access::new(
        TenantContext::new(OrgId::from_uuid(org), system),
        ActorKind::System,
        crate::http::auth::origin(&req),
    );
    let signature = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    let inbound = Inbound {
        kind,
        url: &url,
        params: &params,
        signature,
    };
    // Recordings and voicemails are transcribed under the assistant's
    // agreements; no other callback needs the organization's settings.
    let transcribes = matches!(
        target,
        Target::Kind(CallbackKind::Recording | CallbackKind::Voicemail)
    );
    let speech = match state.speech.as_ref().filter(|_| transcribes) {
        Some(provider) => {
            let org_baa = state
                .orgs
                .find_by_id(OrgId::from_uuid(org))
                .await?
                .is_some_and(|o| o.settings.ai_baa);
            let availability = Availability {
                deployment_enabled: true,
                deployment_baa: state.ai_baa_signed,
                org_baa,
            };
            Some((provider, availability))
        }
        None => None,
    };
    let voicemail_url = format!("{org_url}/voicemail");
    let line = Line {
        telephony: &voice.api,
        calls: &state.calls,
        voicemails: &state.voicemails,
        speech,
        trail: &state.audit,
        events: state.events.as_ref(),
        voicemail_url: &voicemail_url,
    };
    let answered = match target {
        Target::Kind(_) => line.receive(&access, inbound).await,
        Target::Answer(reminder) => line
            .answer_reminder(&state.appointments, &access, inbound, reminder)
            .await
            .map(Some),
    };
    match answered {
        Ok(None) => Ok(HttpResponse::NoContent().finish()),
        Ok(Some(script)) => {
            let (content_type, body) = voice.api.answer(&script);
            Ok(HttpResponse::Ok().content_type(content_type).body(body))
        }
        Err(WebhookRefusal::Forbidden(_)) => Err(ApiError::Forbidden),
        Err(WebhookRefusal::Invalid(why)) => {
            Err(ApiError::Invalid(vec![FieldError::new("body", why)]))
        }
        Err(WebhookRefusal::UnknownCall) => Err(ApiError::NotFound),
        Err(WebhookRefusal::Failed(e)) => Err(ApiError::from(e)),
    }
}

/// Declares the handler of one signed provider callback on
/// `/api/v1/telephony/{org}/…`: the four differ only in their kind, their
/// path and what they answer.
macro_rules! signed_callback {
    ($(#[doc = $doc:tt])* $name:ident, $kind:ident, $op:tt, $path:tt, $($responses:tt)*) => {
        $(#[doc = $doc])*
        #[utoipa::path(post, operation_id = $op, path = $path, tag = "telephony",
            params(("org" = Uuid, Path, description = "organization id"), ("X-Twilio-Signature" = String, Header, description = "the provider's signature")),
            request_body(content = CallbackForm, content_type = "application/x-www-form-urlencoded"),
            responses(problems::UnsignedCallback, $($responses)*))]
        pub async fn $name(
            req: HttpRequest,
            state: State,
            org: web::Path<Uuid>,
            body: web::Bytes,
        ) -> Reply {
            let target = Target::Kind(CallbackKind::$kind);
            callback(req, state, org.into_inner(), body, target).await
        }
    };
}

signed_callback!(
    /// The provider reports a call's status (signed; no bearer token).
    status_callback, Status, "telephony_status_callback", "/api/v1/telephony/{org}/status",
    (status = 204, description = "processed"), problems::NoSuchCall
);

signed_callback!(
    /// The provider reports a finished recording (signed; no bearer token):
    /// Carapace fetches it from the provider, seals and stores it with the
    /// task, and deletes the provider's copy.
    recording_callback, Recording, "telephony_recording_callback", "/api/v1/telephony/{org}/recording",
    (status = 204, description = "stored"), problems::NoSuchCall, problems::RecordingNotServed
);

signed_callback!(
    /// A call to the organization's number (signed; no bearer token): answered
    /// with the voicemail greeting and a recording.
    inbound_call, Inbound, "telephony_inbound_call", "/api/v1/telephony/{org}/voice",
    (status = 200, description = "the voicemail script (TwiML)", content_type = "text/xml", body = String),
    (status = 404, description = "telephony is not configured", body = Problem, content_type = "application/problem+json")
);

signed_callback!(
    /// The provider reports a recorded voicemail (signed; no bearer token):
    /// Carapace fetches it from the provider, seals and transcribes it,
    /// attaches it to the caller's patient record or the organization's
    /// inbox, and deletes the provider's copy.
    voicemail_callback, Voicemail, "telephony_voicemail_callback", "/api/v1/telephony/{org}/voicemail",
    (status = 204, description = "stored"), problems::NoSuchCall, problems::RecordingNotServed
);

/// The key a patient pressed on a reminder call (signed; no bearer token;
/// the URL names the reminder): 1 confirms, 2 cancels, 3 reaches the front
/// desk. Recorded once, as the patient by phone; answered with what the
/// caller hears next.
#[utoipa::path(post, operation_id = "telephony_reminder_answer", path = "/api/v1/telephony/{org}/reminders/{reminder}/answer", tag = "telephony",
    params(("org" = Uuid, Path, description = "organization id"), ("reminder" = Uuid, Path, description = "reminder id"),
        ("X-Twilio-Signature" = String, Header, description = "the provider's signature")),
    request_body(content = CallbackForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "what the caller hears next (TwiML)", content_type = "text/xml", body = String),
        problems::UnsignedCallback,
        (status = 404, description = "no such reminder call", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reminder_answer(
    req: HttpRequest,
    state: State,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Bytes,
) -> Reply {
    let (org, reminder) = path.into_inner();
    callback(req, state, org, body, Target::Answer(reminder)).await
}
