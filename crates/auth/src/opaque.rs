//! Opaque credentials: `<prefix><org id>.<256 random bits>` (both
//! base64url). Only the SHA-256 of the whole string is stored; the org id
//! inside lets the lookup run under that tenant's row-level security. The
//! prefix names the kind, so no kind is accepted as another.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carapace_tenancy::OrgId;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// Longest opaque credential looked at.
const MAX_LEN: usize = 128;

/// A new credential of kind `prefix` for `org`, and the hash to store.
pub fn generate(prefix: &str, org: OrgId) -> (SecretString, [u8; 32]) {
    let random: [u8; 32] = rand::random();
    let token = format!(
        "{prefix}{}.{}",
        URL_SAFE_NO_PAD.encode(org.as_uuid().as_bytes()),
        URL_SAFE_NO_PAD.encode(random)
    );
    let hash = Sha256::digest(token.as_bytes()).into();
    (SecretString::from(token), hash)
}

/// The org and hash of a presented credential of kind `prefix`, if it has
/// exactly the right shape.
pub fn parse(prefix: &str, presented: &SecretString) -> Option<(OrgId, [u8; 32])> {
    let raw = presented.expose_secret();
    if raw.len() > MAX_LEN {
        return None;
    }
    let (org, random) = raw.strip_prefix(prefix)?.split_once('.')?;
    let org = uuid::Uuid::from_slice(&URL_SAFE_NO_PAD.decode(org).ok()?).ok()?;
    let random = URL_SAFE_NO_PAD.decode(random).ok()?;
    (random.len() == 32).then(|| (OrgId::from_uuid(org), Sha256::digest(raw.as_bytes()).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_per_kind_only() {
        let org = OrgId::generate();
        let (token, hash) = generate("xyz_", org);
        assert_eq!(token.expose_secret().len(), 70);
        assert_eq!(parse("xyz_", &token), Some((org, hash)));
        assert_eq!(parse("abc_", &token), None);
        let (other, other_hash) = generate("xyz_", org);
        assert_ne!(hash, other_hash);
        assert_ne!(token.expose_secret(), other.expose_secret());
        for bad in ["", "xyz_", "xyz_nope", "xyz_AAAA.BBBB", &"xyz_".repeat(40)] {
            assert_eq!(
                parse("xyz_", &SecretString::from(bad.to_owned())),
                None,
                "{bad}"
            );
        }
    }
}
