//! Wire shapes of patients. [`PatientView::from`] is the one place patient
//! PHI leaves its [`carapace_phi_crypto::Phi`] wrapper on the way out.

use carapace_clinical::patient::{Patient, PatientInput, PatientPatchInput};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

/// A new patient. Unknown fields (including `org_id`) are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePatient {
    /// 1-100 characters.
    #[schema(example = "Jane", max_length = 100)]
    given_name: String,
    /// 1-100 characters.
    #[schema(example = "Roe", max_length = 100)]
    family_name: String,
    /// `YYYY-MM-DD`, not in the future.
    #[schema(example = "1980-02-03", format = Date)]
    birth_date: String,
    /// Insurance member id: letters, digits, `-`, `_`, `.`; at most 64.
    #[schema(example = "M-778", max_length = 64)]
    member_id: Option<String>,
    /// 7-15 digits with optional `+ ( ) - .` and spaces.
    #[schema(example = "+1 555 010 0100", max_length = 32)]
    phone: Option<String>,
    /// E-mail address.
    #[schema(example = "jane@example.org", max_length = 254)]
    email: Option<String>,
    /// `female`, `male`, `other` or `unknown`.
    #[schema(example = "female")]
    sex: Option<String>,
}

impl CreatePatient {
    /// The raw domain input (validated by the domain).
    pub fn into_input(self) -> PatientInput {
        PatientInput {
            given_name: self.given_name,
            family_name: self.family_name,
            birth_date: self.birth_date,
            member_id: self.member_id,
            phone: self.phone,
            email: self.email,
            sex: self.sex,
        }
    }
}

/// Changes to a patient: absent fields stay, `null` clears an optional
/// field (and is refused for required ones). Unknown fields are refused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePatient {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    family_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Date)]
    birth_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    member_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    sex: Option<Option<String>>,
}

/// A field that is present (`Some`), possibly as `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl UpdatePatient {
    /// The raw domain input (validated by the domain).
    pub fn into_input(self) -> PatientPatchInput {
        PatientPatchInput {
            given_name: self.given_name,
            family_name: self.family_name,
            birth_date: self.birth_date,
            member_id: self.member_id,
            phone: self.phone,
            email: self.email,
            sex: self.sex,
        }
    }
}

/// A patient as returned to clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientView {
    /// The patient's id.
    pub id: Uuid,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub birth_date: String,
    /// Insurance member id.
    pub member_id: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// `female`, `male`, `other` or `unknown`.
    pub sex: Option<String>,
    /// RFC 3339 creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// RFC 3339 time of the last change.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Patient> for PatientView {
    fn from(p: &Patient) -> Self {
        let d = &p.demographics;
        let opt = |v: &Option<carapace_phi_crypto::Phi<String>>| {
            v.as_ref().map(|v| v.expose_phi().clone())
        };
        let date = d.birth_date.expose_phi();
        Self {
            id: p.id.as_uuid(),
            given_name: d.given_name.expose_phi().clone(),
            family_name: d.family_name.expose_phi().clone(),
            birth_date: format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
            member_id: opt(&d.member_id),
            phone: opt(&d.phone),
            email: opt(&d.email),
            sex: d.sex.as_ref().map(|s| s.expose_phi().as_str().to_owned()),
            created_at: p.created_at.format(&Rfc3339).unwrap_or_default(),
            updated_at: p.updated_at.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

/// One page of patients.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientList {
    /// The patients on this page.
    pub items: Vec<PatientView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
