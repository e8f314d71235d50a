//! Problems several operations answer with one meaning, named once for
//! their OpenAPI descriptions (`responses(..., NoSuchCall)`). The common
//! ones every operation may give are added by [`super::docs`].

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// `status` answered as a problem+json `Problem` meaning `description`.
fn problem(status: u16, description: &str) -> BTreeMap<String, RefOr<Response>> {
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    [(status.to_string(), response.into())].into()
}

macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident = $status:literal, $description:literal;)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problem($status, $description)
            }
        }
    )+};
}

problems! {
    /// A provider callback without a valid signature, or one seen before.
    UnsignedCallback = 403, "unsigned, badly signed or replayed";
    /// A provider callback about a call Carapace did not place.
    NoSuchCall = 404, "no such call";
    /// A recording the provider did not serve (it retries the callback).
    RecordingNotServed = 503, "the provider did not serve the recording; it will retry";
    /// A change the record's state does not allow.
    InvalidTransition = 409, "invalid_transition";
    /// A change the record's state or the clock does not allow yet.
    NotStarted = 409, "invalid_transition or not_started";
    /// A patient the caller's organization does not hold.
    NoSuchPatient = 404, "no such patient in your organization";
    /// An organization without a business associate agreement on file.
    OrgBaaMissing = 403, "org_baa_missing";
    /// A listing cursor that is malformed or another organization's.
    BadCursor = 400, "bad or foreign cursor";
    /// The assistant is off, or the deployment has no BAA for it.
    AiUnavailable = 503, "ai_disabled or deployment_baa_missing";
    /// Speech is off, the deployment has no BAA for it, or it is down.
    SpeechUnavailable = 503, "ai_disabled, deployment_baa_missing or speech_unavailable";
    /// Only an MFA-verified administrator of the operator organization.
    NotOperatorAdmin = 403, "not an administrator of the operator organization in an MFA session";
    /// A session taken over for support changes no credentials.
    Impersonated = 403, "an impersonated session changes no credentials";
}
