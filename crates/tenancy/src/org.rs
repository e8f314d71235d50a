use std::fmt;
use std::future::Future;

use serde::Serialize;

use crate::TenancyError;

crate::entity_id! {
    /// The identifier of an organization (a tenant).
    pub struct OrgId;
}

/// A URL-safe organization handle: 3-63 of `a-z`, `0-9`, `-`, not starting or
/// ending with `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    /// Parses a slug.
    pub fn parse(raw: &str) -> Result<Self, TenancyError> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(3..=63).contains(&raw.len()) || !ok_chars || raw.starts_with('-') || raw.ends_with('-')
        {
            return Err(TenancyError::InvalidSlug);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organization's display name: 1-200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    /// Parses a name, trimming surrounding white space.
    pub fn parse(raw: &str) -> Result<Self, TenancyError> {
        let trimmed = raw.trim();
        if trimmed.is_empty()
            || trimmed.chars().count() > 200
            || trimmed.chars().any(char::is_control)
        {
            return Err(TenancyError::InvalidName);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which patients a clinician of the organization may reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClinicianScope {
    /// Only patients in their care team (or under break-glass). Default.
    #[default]
    CareTeam,
    /// Every patient of the organization.
    Organization,
}

impl ClinicianScope {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CareTeam => "care_team",
            Self::Organization => "organization",
        }
    }

    /// Parses a stored name; anything unknown is the narrow default.
    pub fn parse(s: &str) -> Self {
        if s == "organization" {
            Self::Organization
        } else {
            Self::CareTeam
        }
    }
}

/// Which sessions need MFA to reach PHI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PhiMfa {
    /// Only PHI reached through the `admin` role: a relaxation an
    /// administrator must choose explicitly, with a recorded reason.
    Admin,
    /// Every non-patient (staff) session (the default: the seeds ask for
    /// MFA on every staff access to PHI).
    #[default]
    AllStaff,
}

impl PhiMfa {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::AllStaff => "all_staff",
        }
    }

    /// Parses a stored name; anything unknown is the strict choice.
    pub fn parse(s: &str) -> Self {
        if s == "admin" {
            Self::Admin
        } else {
            Self::AllStaff
        }
    }
}

/// What a practitioner's calendar feed may show of each appointment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CalendarDetail {
    /// Times and the word "Appointment" only (default).
    #[default]
    Minimal,
    /// Also the patient's initials.
    Initials,
}

impl CalendarDetail {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Initials => "initials",
        }
    }

    /// Parses a stored name; anything unknown is the minimal choice.
    pub fn parse(s: &str) -> Self {
        if s == "initials" {
            Self::Initials
        } else {
            Self::Minimal
        }
    }
}

/// An organization's access settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrgSettings {
    /// How far its clinicians reach.
    pub clinician_scope: ClinicianScope,
    /// Who needs MFA for PHI.
    pub phi_mfa: PhiMfa,
    /// What calendar feeds show.
    pub calendar_detail: CalendarDetail,
    /// Whether its clinicians may refer patients to, and receive referrals
    /// from, other organizations that allow it too (default: no).
    pub external_referrals: bool,
    /// Whether the organization declares a signed business associate
    /// agreement covering AI (default: no; the AI surface stays off).
    pub ai_baa: bool,
}

/// An organization to be created.
#[derive(Clone, Debug)]
pub struct NewOrganization {
    /// Its handle.
    pub slug: OrgSlug,
    /// Its display name.
    pub name: OrgName,
}

/// A stored organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its handle.
    pub slug: OrgSlug,
    /// Its display name.
    pub name: OrgName,
    /// Its access settings.
    pub settings: OrgSettings,
}

/// The directory of organizations. Organizations are the tenant roots, so
/// this port is the one place that is not scoped by a [`crate::TenantContext`].
pub trait OrganizationRepository: Send + Sync {
    /// Creates an organization; [`TenancyError::SlugTaken`] if the slug exists.
    fn create(
        &self,
        org: NewOrganization,
    ) -> impl Future<Output = Result<Organization, TenancyError>> + Send;

    /// Looks an organization up by its id.
    fn find_by_id(
        &self,
        id: OrgId,
    ) -> impl Future<Output = Result<Option<Organization>, TenancyError>> + Send;

    /// Replaces the organization's access settings; `false` if there is no
    /// such organization.
    fn update_settings(
        &self,
        id: OrgId,
        settings: OrgSettings,
    ) -> impl Future<Output = Result<bool, TenancyError>> + Send;

    /// Looks an organization up by its slug.
    fn find_by_slug(
        &self,
        slug: &OrgSlug,
    ) -> impl Future<Output = Result<Option<Organization>, TenancyError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["acme", "north-clinic-2", "abc"] {
            assert!(OrgSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "-acme",
            "acme-",
            "Acme",
            "ac me",
            "ac_me",
            &"a".repeat(64),
        ] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            OrgName::parse("  North Clinic ").map(|n| n.0).ok(),
            Some("North Clinic".into())
        );
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse(&"x".repeat(201)).is_err());
        assert!(OrgName::parse("a\u{0}b").is_err());
    }
}
