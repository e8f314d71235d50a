//! The external OIDC issuer.

use carapace_auth::issuer::{ClaimRules, IssuerFlavor};
use carapace_infra::oidc::OidcSettings;

use super::OidcProvider;
use super::checks::ConfigProblem;

/// The external OIDC issuer.
#[derive(Clone, Debug)]
pub struct OidcSection {
    /// OIDC issuer URL (exactly as in the tokens' `iss`); discovery and
    /// JWKS are fetched from it.
    pub issuer: Option<String>,
    /// Required `aud` (Cognito: the app client id in `client_id`).
    pub audience: Option<String>,
    /// `generic` or `cognito` (access tokens with `token_use`/`client_id`).
    pub provider: OidcProvider,
    /// Claim with the org id; default `org_id` (Cognito: `custom:org_id`).
    pub org_claim: Option<String>,
    /// Claim with the roles; default `roles` (Cognito: `cognito:groups`).
    pub roles_claim: Option<String>,
}

impl OidcSection {
    /// Issuer settings when `issuer` is set (validated by [`Self::problems`]).
    pub fn settings(&self) -> Option<OidcSettings> {
        let issuer = self.issuer.clone()?;
        let (flavor, org, roles) = match self.provider {
            OidcProvider::Generic => (IssuerFlavor::Standard, "org_id", "roles"),
            OidcProvider::Cognito => (IssuerFlavor::Cognito, "custom:org_id", "cognito:groups"),
        };
        let rules = ClaimRules {
            audience: self.audience.clone().unwrap_or_default(),
            flavor,
            org_claim: self.org_claim.clone().unwrap_or_else(|| org.to_owned()),
            roles_claim: self.roles_claim.clone().unwrap_or_else(|| roles.to_owned()),
        };
        Some(OidcSettings::new(issuer, rules))
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if let Some(issuer) = &self.issuer {
            let ok = url::Url::parse(issuer).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host().is_some() && issuer.len() <= 512
            });
            if !ok {
                p.push(ConfigProblem::new(
                    "CARAPACE_OIDC_ISSUER",
                    "must be an http(s) URL of at most 512 characters",
                ));
            }
            if self.audience.as_deref().is_none_or(str::is_empty) {
                p.push(ConfigProblem::new(
                    "CARAPACE_OIDC_AUDIENCE",
                    "is required with CARAPACE_OIDC_ISSUER (Cognito: the app client id)",
                ));
            }
        }
        for (key, claim) in [
            ("CARAPACE_OIDC_ORG_CLAIM", &self.org_claim),
            ("CARAPACE_OIDC_ROLES_CLAIM", &self.roles_claim),
        ] {
            if claim
                .as_deref()
                .is_some_and(|c| c.is_empty() || c.len() > 128)
            {
                p.push(ConfigProblem::new(key, "must be 1 to 128 characters"));
            }
        }
    }
}
