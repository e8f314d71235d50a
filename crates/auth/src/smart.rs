//! SMART on FHIR scopes (App Launch 2.x, with the 1.x `.read`/`.write`/`.*`
//! spellings): what a token's `scope` claim allows. Scopes only narrow:
//! [`authorize`](crate::policy::authorize) first asks the role, then, for a
//! token that carries SMART scopes, whether a scope covers the permission;
//! a `patient/` scope reaches the patient record linked to the user and
//! nothing else ([`Reach::OwnRecord`]). A token without any SMART scope
//! (a session, a service key, an identity provider's token without them)
//! is limited by its roles alone.
//!
//! Not supported, and so granting nothing (fail closed): scopes with
//! search parameters (`patient/Observation.rs?category=…`), resource types
//! Carapace does not serve.

use std::fmt;

/// The FHIR resource types Carapace serves, as scopes name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// Patients.
    Patient,
    /// Care teams.
    CareTeam,
    /// Appointments.
    Appointment,
    /// Medication statements.
    MedicationStatement,
    /// Side effects.
    AdverseEvent,
    /// Sharing consents.
    Consent,
    /// Referrals.
    ServiceRequest,
    /// Verification tasks.
    Task,
    /// The organization's clinicians.
    Practitioner,
    /// The audit trail.
    AuditEvent,
}

impl ResourceType {
    /// Every type, in a stable order.
    pub const ALL: [ResourceType; 10] = [
        ResourceType::Patient,
        ResourceType::CareTeam,
        ResourceType::Appointment,
        ResourceType::MedicationStatement,
        ResourceType::AdverseEvent,
        ResourceType::Consent,
        ResourceType::ServiceRequest,
        ResourceType::Task,
        ResourceType::Practitioner,
        ResourceType::AuditEvent,
    ];

    /// The FHIR name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::CareTeam => "CareTeam",
            ResourceType::Appointment => "Appointment",
            ResourceType::MedicationStatement => "MedicationStatement",
            ResourceType::AdverseEvent => "AdverseEvent",
            ResourceType::Consent => "Consent",
            ResourceType::ServiceRequest => "ServiceRequest",
            ResourceType::Task => "Task",
            ResourceType::Practitioner => "Practitioner",
            ResourceType::AuditEvent => "AuditEvent",
        }
    }

    /// The type named exactly `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A FHIR interaction, as a SMART v2 scope letter names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interaction {
    /// `c`: create.
    Create,
    /// `r`: read (and vread).
    Read,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search.
    Search,
}

impl Interaction {
    const ALL: [Interaction; 5] = [
        Interaction::Create,
        Interaction::Read,
        Interaction::Update,
        Interaction::Delete,
        Interaction::Search,
    ];

    fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Interaction::Create => 1,
            Interaction::Read => 2,
            Interaction::Update => 4,
            Interaction::Delete => 8,
            Interaction::Search => 16,
        }
    }
}

/// How far a scope reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// `patient/`: the patient record linked to the user only.
    OwnRecord,
    /// `user/` or `system/`: whatever the roles reach.
    Roles,
}

/// One parsed SMART scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Grant {
    reach: Reach,
    /// `None`: every type (`*`).
    resource: Option<ResourceType>,
    /// Interaction bits.
    ops: u8,
}

/// What a token's scopes allow: unrestricted (no SMART scope: the roles
/// decide alone, the default), or only what its SMART scopes name, never
/// more than the roles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes {
    /// `None`: unrestricted.
    grants: Option<Vec<Grant>>,
}

/// Most scopes read from one claim; more is refused as a bad token.
pub const MAX_SCOPES: usize = 64;

impl Scopes {
    /// The scopes of a space-separated `scope` claim. `None` when the claim
    /// is over-long or names more than [`MAX_SCOPES`] scopes (the token is
    /// then refused). Scopes that are not SMART resource scopes (`openid`,
    /// `launch/patient`, `offline_access`…) are ignored; a claim with
    /// resource scopes none of which Carapace honours restricts the token
    /// to nothing.
    pub fn from_claim(claim: &str) -> Option<Self> {
        if claim.len() > 4096 {
            return None;
        }
        let words: Vec<&str> = claim.split_ascii_whitespace().collect();
        if words.len() > MAX_SCOPES {
            return None;
        }
        let mut smart = false;
        let mut grants = Vec::new();
        for word in words {
            let Some((context, rest)) = word.split_once('/') else {
                continue;
            };
            let reach = match context {
                "patient" => Reach::OwnRecord,
                "user" | "system" => Reach::Roles,
                _ => continue,
            };
            smart = true;
            if let Some(grant) = parse_grant(reach, rest) {
                grants.push(grant);
            }
        }
        Some(Self {
            grants: smart.then_some(grants),
        })
    }

    /// No restriction beyond the roles.
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// Whether the token carried SMART scopes.
    pub fn is_restricted(&self) -> bool {
        self.grants.is_some()
    }

    /// How far the scopes let `interaction` on `resource` reach; `None`:
    /// not at all.
    pub fn reach(&self, resource: ResourceType, interaction: Interaction) -> Option<Reach> {
        match &self.grants {
            None => Some(Reach::Roles),
            Some(grants) => grants
                .iter()
                .filter(|g| g.resource.is_none_or(|r| r == resource))
                .filter(|g| g.ops & interaction.bit() != 0)
                .map(|g| g.reach)
                .max(),
        }
    }

    /// The scopes as SMART v2 writes them (for tokens Carapace issues).
    pub fn to_claim(&self) -> Option<String> {
        match &self.grants {
            None => None,
            Some(grants) => Some(
                grants
                    .iter()
                    .map(|g| {
                        let context = match g.reach {
                            Reach::OwnRecord => "patient",
                            Reach::Roles => "system",
                        };
                        let resource = g.resource.map_or("*", ResourceType::as_str);
                        let ops: String = Interaction::ALL
                            .iter()
                            .filter(|i| g.ops & i.bit() != 0)
                            .map(|i| i.letter())
                            .collect();
                        format!("{context}/{resource}.{ops}")
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }
}

fn parse_grant(reach: Reach, rest: &str) -> Option<Grant> {
    let (resource, ops) = rest.split_once('.')?;
    let resource = match resource {
        "*" => None,
        name => Some(ResourceType::parse(name)?),
    };
    let ops = match ops {
        "read" => Interaction::Read.bit() | Interaction::Search.bit(),
        "write" => {
            Interaction::Create.bit() | Interaction::Update.bit() | Interaction::Delete.bit()
        }
        "*" => 31,
        letters => {
            // v2: a non-empty subset of "cruds", in that order.
            let mut bits = 0u8;
            let mut last = None;
            for c in letters.chars() {
                let (pos, i) = Interaction::ALL
                    .iter()
                    .enumerate()
                    .find(|(_, i)| i.letter() == c)?;
                if last.is_some_and(|l| pos <= l) {
                    return None;
                }
                last = Some(pos);
                bits |= i.bit();
            }
            if bits == 0 {
                return None;
            }
            bits
        }
    };
    Some(Grant {
        reach,
        resource,
        ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Interaction::{Create, Delete, Read, Search, Update};

    fn scopes(claim: &str) -> Scopes {
        Scopes::from_claim(claim).unwrap_or_else(|| panic!("a claim"))
    }

    #[test]
    fn no_smart_scope_leaves_the_roles_alone() {
        for claim in [
            "",
            "openid profile",
            "launch/patient offline_access",
            "aws.cognito.signin.user.admin",
            "User/Patient.rs",
        ] {
            assert!(!scopes(claim).is_restricted(), "{claim:?}");
            assert_eq!(
                scopes(claim).reach(ResourceType::Patient, Delete),
                Some(Reach::Roles)
            );
        }
    }

    #[test]
    fn v2_letters_grant_exactly_those_interactions() {
        let s = scopes("openid user/Patient.rs");
        assert_eq!(s.reach(ResourceType::Patient, Read), Some(Reach::Roles));
        assert_eq!(s.reach(ResourceType::Patient, Search), Some(Reach::Roles));
        for i in [Create, Update, Delete] {
            assert_eq!(s.reach(ResourceType::Patient, i), None, "{i:?}");
        }
        assert_eq!(s.reach(ResourceType::Appointment, Read), None);
    }

    #[test]
    fn v1_spellings_and_wildcards() {
        let s = scopes("user/*.read");
        assert_eq!(
            s.reach(ResourceType::AuditEvent, Search),
            Some(Reach::Roles)
        );
        assert_eq!(s.reach(ResourceType::Patient, Update), None);
        let s = scopes("system/Appointment.write");
        assert_eq!(
            s.reach(ResourceType::Appointment, Create),
            Some(Reach::Roles)
        );
        assert_eq!(s.reach(ResourceType::Appointment, Read), None);
        let s = scopes("system/*.*");
        assert_eq!(s.reach(ResourceType::Task, Delete), Some(Reach::Roles));
    }

    #[test]
    fn patient_scopes_reach_the_own_record_only() {
        let s = scopes("patient/*.rs user/Appointment.r");
        assert_eq!(s.reach(ResourceType::Patient, Read), Some(Reach::OwnRecord));
        assert_eq!(s.reach(ResourceType::Appointment, Read), Some(Reach::Roles));
        assert_eq!(
            s.reach(ResourceType::Appointment, Search),
            Some(Reach::OwnRecord)
        );
    }

    #[test]
    fn malformed_and_unsupported_scopes_grant_nothing() {
        for claim in [
            "user/Patient.sr",
            "user/Patient.rr",
            "user/Patient.",
            "user/Patient.x",
            "user/Observation.rs",
            "user/patient.rs",
            "user/Patient.rs?identifier=x",
            "user/Patient",
            "patient/*.rws",
        ] {
            let s = scopes(claim);
            assert!(s.is_restricted(), "{claim:?} restricts");
            for t in ResourceType::ALL {
                for i in Interaction::ALL {
                    assert_eq!(s.reach(t, i), None, "{claim:?} grants {i:?} on {t}");
                }
            }
        }
    }

    #[test]
    fn over_long_claims_are_refused() {
        let many = vec!["user/Patient.r"; MAX_SCOPES + 1].join(" ");
        assert_eq!(Scopes::from_claim(&many), None);
        assert_eq!(Scopes::from_claim(&"x".repeat(5000)), None);
    }

    #[test]
    fn claims_round_trip() {
        let s = scopes("system/Patient.rs system/*.c patient/Appointment.cruds");
        let again = scopes(&s.to_claim().unwrap_or_else(|| panic!("smart")));
        assert_eq!(again, s);
    }
}
