//! Calendar-feed tokens: `caf_<org id>.<256 random bits>`, shown once,
//! stored only as SHA-256, revocable. A feed URL carries one because
//! calendar clients cannot send headers; it grants reading one
//! practitioner's minimal feed and nothing else.

use carapace_tenancy::OrgId;
use secrecy::SecretString;

const PREFIX: &str = "caf_";

/// A new feed token for `org`, and the hash to store.
pub fn generate(org: OrgId) -> (SecretString, [u8; 32]) {
    crate::opaque::generate(PREFIX, org)
}

/// The org and hash of a presented feed token, if it has the right shape.
pub fn parse(presented: &SecretString) -> Option<(OrgId, [u8; 32])> {
    crate::opaque::parse(PREFIX, presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_token_is_no_service_key() {
        let org = OrgId::generate();
        let (token, hash) = generate(org);
        assert_eq!(parse(&token), Some((org, hash)));
        assert!(crate::service_keys::parse(&token).is_none());
        assert!(parse(&SecretString::from("caf_nope")).is_none());
    }
}
