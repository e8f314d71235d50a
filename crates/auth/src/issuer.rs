//! Reading an external identity provider's access-token claims (after the
//! adapter has checked signature, algorithm, issuer, expiry and not-before).
//!
//! Pure: the rules for which claims make a principal live here, so they are
//! tested without a network or a key.

use carapace_tenancy::{OrgId, SubjectId};
use serde_json::{Map, Value};

use crate::{AuthError, Role, RoleSet};

/// Prefix of subjects from issuer tokens (`oidc:<sub>`).
pub const SUBJECT_PREFIX: &str = "oidc:";

/// Which conventions the issuer's access tokens follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IssuerFlavor {
    /// Standard OIDC / OAuth 2 access tokens: `aud` holds the audience.
    #[default]
    Standard,
    /// AWS Cognito: access tokens have no `aud`; `client_id` holds the app
    /// client and `token_use` must be `access` (ID tokens say `id`).
    Cognito,
}

/// How to read an issuer's claims.
#[derive(Clone, Debug)]
pub struct ClaimRules {
    /// The audience (Cognito: app client id) tokens must be for.
    pub audience: String,
    /// Token conventions.
    pub flavor: IssuerFlavor,
    /// Claim holding the organization id (a UUID).
    pub org_claim: String,
    /// Claim holding the roles (array of strings, or one space/comma
    /// separated string).
    pub roles_claim: String,
}

/// What an issuer's verified access token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerClaims {
    /// `oidc:<sub>`: stable per user at the (single configured) issuer,
    /// never the e-mail.
    pub subject: SubjectId,
    /// The organization claimed; the caller must check it exists.
    pub org: OrgId,
    /// Known roles (unknown names grant nothing).
    pub roles: RoleSet,
    /// `amr` contains `mfa` or `otp`.
    pub mfa: bool,
}

/// Applies the claim rules to a verified token's claims.
pub fn read_issuer_claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
) -> Result<IssuerClaims, AuthError> {
    let token_use = claims.get("token_use").and_then(Value::as_str);
    match rules.flavor {
        IssuerFlavor::Cognito => {
            if token_use != Some("access") {
                return Err(AuthError::InvalidToken("not an access token (token_use)"));
            }
            if claims.get("client_id").and_then(Value::as_str) != Some(rules.audience.as_str()) {
                return Err(AuthError::InvalidToken("client_id is not this audience"));
            }
        }
        IssuerFlavor::Standard => {
            // `aud` is checked during verification; a token that declares a
            // use declares the right one.
            if token_use.is_some_and(|u| u != "access") {
                return Err(AuthError::InvalidToken("not an access token (token_use)"));
            }
        }
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .ok_or(AuthError::InvalidToken("missing or bad sub"))
        .and_then(|s| {
            // Namespaced, so an issuer's `sub` can never pose as a local
            // user id or a service key.
            SubjectId::parse(&format!("{SUBJECT_PREFIX}{s}"))
                .map_err(|_| AuthError::InvalidToken("bad sub"))
        })?;
    let org = claims
        .get(&rules.org_claim)
        .and_then(Value::as_str)
        .ok_or(AuthError::InvalidToken("no org claim"))
        .and_then(|s| {
            uuid::Uuid::parse_str(s)
                .map(OrgId::from_uuid)
                .map_err(|_| AuthError::InvalidToken("org claim is not an org id"))
        })?;
    let names: Vec<&str> = match claims.get(&rules.roles_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split([' ', ',']).filter(|r| !r.is_empty()).collect(),
        Some(_) => return Err(AuthError::InvalidToken("roles claim has the wrong type")),
    };
    if names.len() > RoleSet::MAX_CLAIMED {
        return Err(AuthError::InvalidToken("too many roles"));
    }
    let roles: Vec<Role> = names.iter().filter_map(|r| r.parse().ok()).collect();
    let mfa = claims
        .get("amr")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|m| matches!(m.as_str(), Some("mfa" | "otp"))));
    Ok(IssuerClaims {
        subject,
        org,
        roles: RoleSet::of(&roles),
        mfa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORG: &str = "0190d5a4-0000-7000-8000-000000000001";

    fn rules(flavor: IssuerFlavor) -> ClaimRules {
        let (org_claim, roles_claim) = match flavor {
            IssuerFlavor::Standard => ("org_id", "roles"),
            IssuerFlavor::Cognito => ("custom:org_id", "cognito:groups"),
        };
        ClaimRules {
            audience: "carapace-api".into(),
            flavor,
            org_claim: org_claim.into(),
            roles_claim: roles_claim.into(),
        }
    }

    fn read(v: Value, flavor: IssuerFlavor) -> Result<IssuerClaims, AuthError> {
        match v {
            Value::Object(m) => read_issuer_claims(&m, &rules(flavor)),
            _ => panic!("object"),
        }
    }

    #[test]
    fn standard_access_token() {
        let c = read(
            json!({"sub": "u-1", "org_id": ORG, "roles": ["clinician", "superuser"], "amr": ["pwd", "mfa"]}),
            IssuerFlavor::Standard,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.subject.as_str(), "oidc:u-1");
        assert_eq!(c.org.to_string(), ORG);
        assert_eq!(c.roles, RoleSet::of(&[Role::Clinician]));
        assert!(c.mfa);
        let spaced = read(
            json!({"sub": "u", "org_id": ORG, "roles": "viewer staff"}),
            IssuerFlavor::Standard,
        );
        assert_eq!(
            spaced.map(|c| c.roles).ok(),
            Some(RoleSet::of(&[Role::Viewer, Role::Staff]))
        );
    }

    #[test]
    fn cognito_access_token_needs_token_use_and_client_id() {
        let ok = json!({"sub": "u", "custom:org_id": ORG, "cognito:groups": ["admin"],
                        "token_use": "access", "client_id": "carapace-api"});
        assert!(read(ok, IssuerFlavor::Cognito).is_ok());
        let id_token =
            json!({"sub": "u", "custom:org_id": ORG, "token_use": "id", "aud": "carapace-api"});
        assert!(read(id_token.clone(), IssuerFlavor::Cognito).is_err());
        assert!(
            read(id_token, IssuerFlavor::Standard).is_err(),
            "an ID token is never an access token"
        );
        let other_client =
            json!({"sub": "u", "custom:org_id": ORG, "token_use": "access", "client_id": "other"});
        assert!(read(other_client, IssuerFlavor::Cognito).is_err());
    }

    #[test]
    fn missing_or_malformed_claims_are_refused() {
        let cases = [
            json!({"org_id": ORG}),
            json!({"sub": "u"}),
            json!({"sub": "u", "org_id": "acme"}),
            json!({"sub": "", "org_id": ORG}),
            json!({"sub": "u", "org_id": ORG, "roles": 7}),
            json!({"sub": "u", "org_id": ORG, "roles": vec!["viewer"; 17]}),
        ];
        for c in cases {
            assert!(read(c.clone(), IssuerFlavor::Standard).is_err(), "{c}");
        }
    }

    #[test]
    fn no_roles_is_a_principal_with_no_permissions() {
        let c = read(json!({"sub": "u", "org_id": ORG}), IssuerFlavor::Standard)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.roles, RoleSet::default());
        assert!(!c.mfa);
    }
}
