//! Reading an external identity provider's access-token claims (after the
//! adapter has checked the signature and algorithm).
//!
//! Pure: the rules for which claims make a principal live here, so they are
//! tested without a network or a key. [`check_registered_claims`] holds
//! every token to `iss`, the audience, `exp`, `sub` and (when present)
//! `nbf`, with the exact JSON types the JWT specification gives them, on
//! top of whatever the adapter's JWT library checks.

use carapace_tenancy::{OrgId, SubjectId};
use serde_json::{Map, Value};

use crate::smart::Scopes;
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
    /// The SMART scopes of `scope` (a space-separated string) or `scp`
    /// (an array): they narrow the roles ([`crate::smart`]).
    pub scopes: Scopes,
}

/// What a token's registered claims must say, and the clock they are read
/// against.
#[derive(Clone, Copy, Debug)]
pub struct RegisteredClaims<'a> {
    /// The configured issuer; `iss` must be this string exactly.
    pub issuer: &'a str,
    /// The configured audience (Cognito: app client id). An empty one
    /// matches no token.
    pub audience: &'a str,
    /// Token conventions (where the audience is).
    pub flavor: IssuerFlavor,
    /// Now, in seconds since the Unix epoch.
    pub now: u64,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway: u64,
}

/// Checks the registered claims of a token whose signature verified, for
/// every provider (fail closed: absent, `null` or mistyped is refused):
/// - `iss`: a string equal to the configured issuer;
/// - the audience: `aud` a string equal to it, or an array of strings
///   containing it; Cognito access tokens carry no `aud` but `client_id`,
///   a string equal to it (an `aud` there, if any, must name it too);
/// - `exp`: a number, not before `now - leeway`;
/// - `nbf`: absent, or a number not after `now + leeway`;
/// - `sub`: a non-empty string.
pub fn check_registered_claims(
    claims: &Map<String, Value>,
    expected: &RegisteredClaims<'_>,
) -> Result<(), AuthError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == expected.issuer && !iss.is_empty() => {}
        _ => return Err(AuthError::InvalidToken("iss missing or not this issuer")),
    }
    let audience = expected.audience;
    let names_audience = |aud: &Value| match aud {
        Value::String(a) => a == audience,
        Value::Array(items) => {
            items.iter().all(Value::is_string) && items.iter().any(|a| a.as_str() == Some(audience))
        }
        _ => false,
    };
    let audience_ok = !audience.is_empty()
        && match expected.flavor {
            IssuerFlavor::Standard => claims.get("aud").is_some_and(names_audience),
            IssuerFlavor::Cognito => {
                claims.get("client_id").and_then(Value::as_str) == Some(audience)
                    && claims.get("aud").is_none_or(names_audience)
            }
        };
    if !audience_ok {
        return Err(AuthError::InvalidToken("audience missing or not this one"));
    }
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(AuthError::InvalidToken("exp missing or not a number"))?;
    if exp.saturating_add(expected.leeway) < expected.now {
        return Err(AuthError::InvalidToken("expired"));
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or(AuthError::InvalidToken("nbf not a number"))?;
        if nbf > expected.now.saturating_add(expected.leeway) {
            return Err(AuthError::InvalidToken("not valid yet (nbf)"));
        }
    }
    match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => Ok(()),
        _ => Err(AuthError::InvalidToken("sub missing or empty")),
    }
}

/// A JSON number as seconds since the epoch (fractions allowed, as the
/// JWT specification says); negative, non-finite or absurd values are not.
fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                .map(|f| {
                    #[expect(
                        clippy::as_conversions,
                        reason = "finite, non-negative and under 1e15: exact in u64"
                    )]
                    let whole = f.floor() as u64;
                    whole
                })
        }),
        _ => None,
    }
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
    let scope_claim = match (claims.get("scope"), claims.get("scp")) {
        (None | Some(Value::Null), None | Some(Value::Null)) => String::new(),
        (Some(Value::String(s)), None) => s.clone(),
        (None, Some(Value::Array(items))) if items.len() <= crate::smart::MAX_SCOPES => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or(AuthError::InvalidToken("scp holds a non-string"))
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(" "),
        _ => return Err(AuthError::InvalidToken("scope claim has the wrong type")),
    };
    let scopes =
        Scopes::from_claim(&scope_claim).ok_or(AuthError::InvalidToken("too many scopes"))?;
    Ok(IssuerClaims {
        subject,
        org,
        roles: RoleSet::of(&roles),
        mfa,
        scopes,
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
    fn scopes_narrow_and_malformed_scope_claims_are_refused() {
        use crate::smart::{Interaction, Reach, ResourceType};
        let claims =
            |scope: Value| json!({"sub": "u", "org_id": ORG, "roles": ["staff"], "scope": scope});
        let c = read(
            claims(json!("openid user/Patient.rs")),
            IssuerFlavor::Standard,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.scopes.reach(ResourceType::Patient, Interaction::Read),
            Some(Reach::Roles)
        );
        assert_eq!(
            c.scopes.reach(ResourceType::Patient, Interaction::Update),
            None
        );
        let scp = json!({"sub": "u", "org_id": ORG, "scp": ["patient/Patient.r"]});
        let c = read(scp, IssuerFlavor::Standard).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.scopes.reach(ResourceType::Patient, Interaction::Read),
            Some(Reach::OwnRecord)
        );
        let none = read(json!({"sub": "u", "org_id": ORG}), IssuerFlavor::Standard)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!none.scopes.is_restricted());
        for bad in [
            claims(json!(["user/Patient.rs"])),
            claims(json!(7)),
            json!({"sub": "u", "org_id": ORG, "scp": ["user/Patient.rs", 1]}),
            json!({"sub": "u", "org_id": ORG, "scope": "user/Patient.rs", "scp": ["system/*.*"]}),
            claims(json!(vec!["user/Patient.r"; 65].join(" "))),
        ] {
            assert!(read(bad.clone(), IssuerFlavor::Standard).is_err(), "{bad}");
        }
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

    const ISS: &str = "https://issuer.example";
    const NOW: u64 = 1_800_000_000;

    fn registered(flavor: IssuerFlavor) -> RegisteredClaims<'static> {
        RegisteredClaims {
            issuer: ISS,
            audience: "carapace-api",
            flavor,
            now: NOW,
            leeway: 60,
        }
    }

    fn check(claims: &Value, flavor: IssuerFlavor) -> Result<(), AuthError> {
        match claims {
            Value::Object(m) => check_registered_claims(m, &registered(flavor)),
            _ => panic!("object"),
        }
    }

    /// `base` with `claim` set to `value` (removed for `None`).
    fn with(base: &Value, claim: &str, value: Option<Value>) -> Value {
        let mut c = base.clone();
        if let Some(m) = c.as_object_mut() {
            match value {
                Some(v) => m.insert(claim.to_owned(), v),
                None => m.remove(claim),
            };
        }
        c
    }

    /// For `iss`, `exp`, `sub` and `nbf`: missing (but `nbf`), null, each
    /// wrong JSON type, and wrong values.
    fn refused_cases() -> Vec<(&'static str, Option<Value>)> {
        let mut cases = Vec::new();
        for v in [
            None,
            Some(Value::Null),
            Some(json!(7)),
            Some(json!(true)),
            Some(json!({"iss": ISS})),
            Some(json!([ISS])),
            Some(json!("https://evil.example")),
            Some(json!(format!("{ISS}/"))),
            Some(json!("")),
        ] {
            cases.push(("iss", v));
        }
        for v in [
            None,
            Some(Value::Null),
            Some(json!("1800000600")),
            Some(json!(true)),
            Some(json!({"exp": NOW + 600})),
            Some(json!([NOW + 600])),
            Some(json!(NOW - 61)),
            Some(json!(-1)),
        ] {
            cases.push(("exp", v));
        }
        for v in [
            Some(Value::Null),
            Some(json!("1800000000")),
            Some(json!(false)),
            Some(json!({})),
            Some(json!([NOW])),
            Some(json!(NOW + 61)),
        ] {
            cases.push(("nbf", v));
        }
        for v in [
            None,
            Some(Value::Null),
            Some(json!(7)),
            Some(json!(true)),
            Some(json!({"sub": "u"})),
            Some(json!(["u"])),
            Some(json!("")),
        ] {
            cases.push(("sub", v));
        }
        cases
    }

    #[test]
    fn registered_claims_of_standard_tokens() {
        let good =
            json!({"iss": ISS, "aud": "carapace-api", "sub": "u", "exp": NOW + 600, "nbf": NOW});
        assert!(check(&good, IssuerFlavor::Standard).is_ok());
        assert!(check(&with(&good, "nbf", None), IssuerFlavor::Standard).is_ok());
        assert!(
            check(
                &with(&good, "exp", Some(json!(NOW - 59))),
                IssuerFlavor::Standard
            )
            .is_ok(),
            "within the leeway"
        );
        assert!(
            check(
                &with(&good, "nbf", Some(json!(NOW + 59))),
                IssuerFlavor::Standard
            )
            .is_ok(),
            "within the leeway"
        );
        assert!(
            check(
                &with(&good, "exp", Some(json!(1_800_000_600.5))),
                IssuerFlavor::Standard
            )
            .is_ok()
        );
        for aud in [json!(["carapace-api"]), json!(["other", "carapace-api"])] {
            assert!(
                check(
                    &with(&good, "aud", Some(aud.clone())),
                    IssuerFlavor::Standard
                )
                .is_ok(),
                "{aud}"
            );
        }
        let mut refused = refused_cases();
        for v in [
            None,
            Some(Value::Null),
            Some(json!(7)),
            Some(json!(true)),
            Some(json!({"aud": "carapace-api"})),
            Some(json!([])),
            Some(json!(["other"])),
            Some(json!(["carapace-api", 7])),
            Some(json!("other")),
            Some(json!("")),
        ] {
            refused.push(("aud", v));
        }
        for (claim, value) in refused {
            let c = with(&good, claim, value.clone());
            assert!(
                check(&c, IssuerFlavor::Standard).is_err(),
                "{claim} = {value:?}"
            );
        }
    }

    #[test]
    fn registered_claims_of_cognito_access_tokens() {
        let good = json!({"iss": ISS, "client_id": "carapace-api", "token_use": "access",
                          "sub": "u", "exp": NOW + 600});
        assert!(check(&good, IssuerFlavor::Cognito).is_ok());
        assert!(
            check(
                &with(&good, "aud", Some(json!("carapace-api"))),
                IssuerFlavor::Cognito
            )
            .is_ok()
        );
        let mut refused = refused_cases();
        for v in [
            None,
            Some(Value::Null),
            Some(json!(7)),
            Some(json!(true)),
            Some(json!({})),
            Some(json!(["carapace-api"])),
            Some(json!("other")),
            Some(json!("")),
        ] {
            refused.push(("client_id", v));
        }
        refused.push(("aud", Some(json!("other"))));
        refused.push(("aud", Some(json!(7))));
        for (claim, value) in refused {
            let c = with(&good, claim, value.clone());
            assert!(
                check(&c, IssuerFlavor::Cognito).is_err(),
                "{claim} = {value:?}"
            );
        }
    }

    #[test]
    fn an_empty_configured_audience_matches_nothing() {
        let c = json!({"iss": ISS, "aud": "", "sub": "u", "exp": NOW + 600});
        let Value::Object(m) = c else {
            panic!("object")
        };
        let expected = RegisteredClaims {
            audience: "",
            ..registered(IssuerFlavor::Standard)
        };
        assert!(check_registered_claims(&m, &expected).is_err());
    }

    #[test]
    fn no_roles_is_a_principal_with_no_permissions() {
        let c = read(json!({"sub": "u", "org_id": ORG}), IssuerFlavor::Standard)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.roles, RoleSet::default());
        assert!(!c.mfa);
    }
}
