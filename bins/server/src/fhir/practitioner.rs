//! `Practitioner` ← a local account that holds the clinician role
//! ([`carapace_auth::local::admin::is_practitioner`]). Its id is the
//! account's, which is also the subject it acts as: the identifier
//! ([`SUBJECT_SYSTEM`]) by which appointments and care teams name it.
//! Accounts carry no name, so a practitioner has none; its login address
//! is its work e-mail.

use carapace_auth::local::Account;
use serde_json::{Value, json};

use super::appointment::SUBJECT_SYSTEM;

/// The FHIR JSON of a practitioner's account.
pub fn to_fhir(a: &Account) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": a.id.to_string(),
        "active": a.active,
        "identifier": [{"system": SUBJECT_SYSTEM, "value": a.id.to_string()}],
        "telecom": [{"system": "email", "value": a.email.as_str(), "use": "work"}],
    })
}
