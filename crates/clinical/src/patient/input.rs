//! Raw patient input as a client sends it, and the rules that turn it into
//! validated [`Demographics`] or a [`PatientPatch`].

use carapace_phi_crypto::Phi;
use time::{Date, macros::format_description};
use validator::ValidateEmail;

use super::{Demographics, PatientPatch};
use crate::input::phi_text as text;
use crate::{ClinicalError, FieldError};

/// Field limits, in characters.
pub mod limits {
    /// Longest given or family name.
    pub const NAME_MAX: usize = 100;
    /// Longest insurance member id.
    pub const MEMBER_ID_MAX: usize = 64;
    /// Longest phone number as typed.
    pub const PHONE_MAX: usize = 32;
    /// Longest e-mail address (RFC 5321 path limit).
    pub const EMAIL_MAX: usize = 254;
    /// Earliest accepted year of birth.
    pub const BIRTH_YEAR_MIN: i32 = 1900;
}

/// A new patient as sent by a client, before validation.
#[derive(Clone, Debug, Default)]
pub struct PatientInput {
    /// Given name, 1-100 characters.
    pub given_name: String,
    /// Family name, 1-100 characters.
    pub family_name: String,
    /// `YYYY-MM-DD`, not in the future, not before 1900.
    pub birth_date: String,
    /// Insurance member id: 1-64 of letters, digits, `-`, `_`, `.`.
    pub member_id: Option<String>,
    /// Phone: 7-15 digits, optionally with `+`, spaces, `-`, `.`, `(`, `)`.
    pub phone: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// `female`, `male`, `other` or `unknown`.
    pub sex: Option<String>,
}

/// Changes to a patient as sent by a client, before validation: `None`
/// leaves a field alone, `Some(None)` (JSON `null`) clears it, which the
/// required fields refuse.
#[derive(Clone, Debug, Default)]
pub struct PatientPatchInput {
    /// New given name.
    pub given_name: Option<Option<String>>,
    /// New family name.
    pub family_name: Option<Option<String>>,
    /// New date of birth.
    pub birth_date: Option<Option<String>>,
    /// New or cleared member id.
    pub member_id: Option<Option<String>>,
    /// New or cleared phone.
    pub phone: Option<Option<String>>,
    /// New or cleared e-mail.
    pub email: Option<Option<String>>,
    /// New or cleared sex.
    pub sex: Option<Option<String>>,
}

impl PatientInput {
    /// Validates every field, reporting every problem at once. `today` is
    /// the current date (birth dates after it are refused).
    pub fn parse(self, today: Date) -> Result<Demographics, ClinicalError> {
        let mut errors = Vec::new();
        let given_name = name("given_name", &self.given_name, &mut errors);
        let family_name = name("family_name", &self.family_name, &mut errors);
        let birth_date = birth_date("birth_date", &self.birth_date, today, &mut errors);
        let member_id = self
            .member_id
            .as_deref()
            .and_then(|v| member_id(v, &mut errors));
        let phone = self.phone.as_deref().and_then(|v| phone(v, &mut errors));
        let email = self.email.as_deref().and_then(|v| email(v, &mut errors));
        let sex = self.sex.as_deref().and_then(|v| sex(v, &mut errors));
        match (given_name, family_name, birth_date) {
            (Some(given_name), Some(family_name), Some(birth_date)) if errors.is_empty() => {
                Ok(Demographics {
                    given_name,
                    family_name,
                    birth_date,
                    member_id,
                    phone,
                    email,
                    sex,
                })
            }
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

impl PatientPatchInput {
    /// Validates every present field, reporting every problem at once.
    pub fn parse(self, today: Date) -> Result<PatientPatch, ClinicalError> {
        let mut errors = Vec::new();
        let patch = PatientPatch {
            given_name: required("given_name", self.given_name, &mut errors)
                .and_then(|v| name("given_name", &v, &mut errors)),
            family_name: required("family_name", self.family_name, &mut errors)
                .and_then(|v| name("family_name", &v, &mut errors)),
            birth_date: required("birth_date", self.birth_date, &mut errors)
                .and_then(|v| birth_date("birth_date", &v, today, &mut errors)),
            member_id: self
                .member_id
                .map(|o| o.and_then(|v| member_id(&v, &mut errors))),
            phone: self.phone.map(|o| o.and_then(|v| phone(&v, &mut errors))),
            email: self.email.map(|o| o.and_then(|v| email(&v, &mut errors))),
            sex: self.sex.map(|o| o.and_then(|v| sex(&v, &mut errors))),
        };
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(ClinicalError::Invalid(errors))
        }
    }
}

/// A required field in a patch: absent is fine, `null` is not.
fn required(
    field: &str,
    value: Option<Option<String>>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value {
        Some(None) => {
            errors.push(FieldError::new(field, "is required and cannot be cleared"));
            None
        }
        Some(Some(v)) => Some(v),
        None => None,
    }
}

/// Parses a `member_id` listing filter with the same rule as the field.
pub fn member_id_filter(raw: &str) -> Result<Phi<String>, ClinicalError> {
    let mut errors = Vec::new();
    member_id(raw, &mut errors).ok_or(ClinicalError::Invalid(errors))
}

/// Parses a (family name, birth date) search; both are required together.
pub fn name_dob_filter(
    family_name: &str,
    birth: &str,
    today: Date,
) -> Result<(Phi<String>, Phi<Date>), ClinicalError> {
    let mut errors = Vec::new();
    let name = name("family_name", family_name, &mut errors);
    let date = birth_date("birth_date", birth, today, &mut errors);
    match (name, date) {
        (Some(n), Some(d)) if errors.is_empty() => Ok((n, d)),
        _ => Err(ClinicalError::Invalid(errors)),
    }
}

fn name(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<Phi<String>> {
    text(field, raw, limits::NAME_MAX, errors)
}

fn birth_date(
    field: &str,
    raw: &str,
    today: Date,
    errors: &mut Vec<FieldError>,
) -> Option<Phi<Date>> {
    let format = format_description!("[year]-[month]-[day]");
    // Bound before parsing: the parser never sees more than a date's worth.
    let parsed = (raw.len() == 10)
        .then(|| Date::parse(raw, &format).ok())
        .flatten();
    match parsed {
        None => errors.push(FieldError::new(field, "must be a date as YYYY-MM-DD")),
        Some(d) if d > today => errors.push(FieldError::new(field, "must not be in the future")),
        Some(d) if d.year() < limits::BIRTH_YEAR_MIN => errors.push(FieldError::new(
            field,
            format!("must not be before {}", limits::BIRTH_YEAR_MIN),
        )),
        Some(d) => return Some(Phi::new(d)),
    }
    None
}

fn sex(raw: &str, errors: &mut Vec<FieldError>) -> Option<Phi<super::Sex>> {
    let parsed = super::Sex::parse(raw.trim());
    if parsed.is_none() {
        errors.push(FieldError::new(
            "sex",
            "must be female, male, other or unknown",
        ));
    }
    parsed.map(Phi::new)
}

fn member_id(raw: &str, errors: &mut Vec<FieldError>) -> Option<Phi<String>> {
    let value = text("member_id", raw, limits::MEMBER_ID_MAX, errors)?;
    if value
        .expose_phi()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some(value)
    } else {
        errors.push(FieldError::new(
            "member_id",
            "may hold only letters, digits, '-', '_' and '.'",
        ));
        None
    }
}

fn phone(raw: &str, errors: &mut Vec<FieldError>) -> Option<Phi<String>> {
    let value = text("phone", raw, limits::PHONE_MAX, errors)?;
    let v = value.expose_phi();
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let shape_ok = v
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'));
    if shape_ok && (7..=15).contains(&digits) {
        Some(value)
    } else {
        errors.push(FieldError::new(
            "phone",
            "must be 7 to 15 digits, optionally with + ( ) - . and spaces",
        ));
        None
    }
}

fn email(raw: &str, errors: &mut Vec<FieldError>) -> Option<Phi<String>> {
    let value = text("email", raw, limits::EMAIL_MAX, errors)?;
    if value.expose_phi().validate_email() {
        Some(value)
    } else {
        errors.push(FieldError::new("email", "must be an e-mail address"));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 23);

    fn valid() -> PatientInput {
        PatientInput {
            given_name: "Jane".into(),
            family_name: "Roe".into(),
            birth_date: "1980-02-03".into(),
            member_id: Some("M-778.1_a".into()),
            phone: Some("+1 (555) 010-0100".into()),
            email: Some("jane@example.org".into()),
            sex: None,
        }
    }

    fn fields_of(r: Result<Demographics, ClinicalError>) -> Vec<String> {
        match r {
            Err(ClinicalError::Invalid(errs)) => errs.into_iter().map(|e| e.field).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_valid_patient_and_trims_names() {
        let d = PatientInput {
            given_name: "  Jane ".into(),
            ..valid()
        }
        .parse(TODAY)
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(d.given_name.expose_phi(), "Jane");
        assert_eq!(*d.birth_date.expose_phi(), date!(1980 - 02 - 03));
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(PatientInput, &str)> = vec![
            (
                PatientInput {
                    given_name: "x".repeat(10_000),
                    ..valid()
                },
                "given_name",
            ),
            (
                PatientInput {
                    given_name: "   ".into(),
                    ..valid()
                },
                "given_name",
            ),
            (
                PatientInput {
                    family_name: "a\u{7}b".into(),
                    ..valid()
                },
                "family_name",
            ),
            (
                PatientInput {
                    birth_date: "yesterday".into(),
                    ..valid()
                },
                "birth_date",
            ),
            (
                PatientInput {
                    birth_date: "1980-02-30".into(),
                    ..valid()
                },
                "birth_date",
            ),
            (
                PatientInput {
                    birth_date: "2026-11-24".into(),
                    ..valid()
                },
                "birth_date",
            ),
            (
                PatientInput {
                    birth_date: "1899-12-31".into(),
                    ..valid()
                },
                "birth_date",
            ),
            (
                PatientInput {
                    birth_date: "1980-2-3".into(),
                    ..valid()
                },
                "birth_date",
            ),
            (
                PatientInput {
                    member_id: Some("M 1".into()),
                    ..valid()
                },
                "member_id",
            ),
            (
                PatientInput {
                    member_id: Some("m".repeat(65)),
                    ..valid()
                },
                "member_id",
            ),
            (
                PatientInput {
                    phone: Some("12345".into()),
                    ..valid()
                },
                "phone",
            ),
            (
                PatientInput {
                    phone: Some("555-CALL-NOW".into()),
                    ..valid()
                },
                "phone",
            ),
            (
                PatientInput {
                    email: Some("not-an-email".into()),
                    ..valid()
                },
                "email",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(fields_of(input.parse(TODAY)), vec![field.to_owned()]);
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let input = PatientInput {
            given_name: String::new(),
            family_name: String::new(),
            birth_date: String::new(),
            ..valid()
        };
        assert_eq!(
            fields_of(input.parse(TODAY)),
            vec!["given_name", "family_name", "birth_date"]
        );
    }

    #[test]
    fn patch_validates_present_fields_and_allows_clearing() {
        let ok = PatientPatchInput {
            given_name: Some(Some("Ann".into())),
            member_id: Some(None),
            ..PatientPatchInput::default()
        }
        .parse(TODAY)
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.member_id, Some(None));
        assert!(ok.family_name.is_none());

        let bad = PatientPatchInput {
            given_name: Some(Some(String::new())),
            family_name: Some(None),
            email: Some(Some("nope".into())),
            ..PatientPatchInput::default()
        }
        .parse(TODAY);
        assert!(matches!(bad, Err(ClinicalError::Invalid(e)) if e.len() == 3));
    }

    #[test]
    fn error_messages_never_echo_the_value() {
        let r = PatientInput {
            email: Some("secret-name@@".into()),
            ..valid()
        }
        .parse(TODAY);
        assert!(!format!("{r:?}").contains("secret-name"));
    }
}
