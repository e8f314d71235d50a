//! The opaque refresh token and the sealing of its successor.

use carapace_phi_crypto::LocalSealer;
use carapace_tenancy::OrgId;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::AuthError;

const REFRESH_PREFIX: &str = "crt_";

/// An opaque refresh token (`crt_…`, see `crate::opaque`).
pub struct RefreshToken;

impl RefreshToken {
    /// A new token for `org` and the hash to store.
    pub fn generate(org: OrgId) -> (SecretString, [u8; 32]) {
        crate::opaque::generate(REFRESH_PREFIX, org)
    }

    /// The org and hash of a presented token, if it has the right shape.
    pub fn parse(presented: &SecretString) -> Option<(OrgId, [u8; 32])> {
        crate::opaque::parse(REFRESH_PREFIX, presented)
    }

    /// `successor` sealed (AES-256-GCM) under a key derived from the
    /// `presented` token alone: the stored ciphertext opens only for a
    /// client that holds the spent token, never from the database (which
    /// keeps the token's plain SHA-256, a different derivation).
    pub fn seal_successor(
        presented: &SecretString,
        successor: &SecretString,
    ) -> Result<Vec<u8>, AuthError> {
        successor_sealer(presented)
            .seal_now(SUCCESSOR_CONTEXT, successor.expose_secret().as_bytes())
            .map_err(|_| AuthError::Unavailable)
    }

    /// Opens what [`Self::seal_successor`] sealed for `presented`.
    pub fn open_successor(
        presented: &SecretString,
        sealed: &[u8],
    ) -> Result<SecretString, AuthError> {
        let bytes = successor_sealer(presented)
            .open_now(SUCCESSOR_CONTEXT, sealed)
            .map_err(|_| AuthError::InvalidToken("refresh token reused; session revoked"))?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| AuthError::InvalidToken("refresh token reused; session revoked"))
    }
}

const SUCCESSOR_CONTEXT: &[u8] = b"carapace refresh successor v1";

fn successor_sealer(presented: &SecretString) -> LocalSealer {
    let mut h = Sha256::new();
    h.update(b"carapace-refresh-successor-key\0");
    h.update(presented.expose_secret().as_bytes());
    LocalSealer::new(&h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_their_org_and_hash_consistently() {
        let org = OrgId::generate();
        let (token, hash) = RefreshToken::generate(org);
        assert!(token.expose_secret().starts_with("crt_"));
        assert_eq!(RefreshToken::parse(&token), Some((org, hash)));
        let (next, _) = RefreshToken::generate(org);
        let sealed = RefreshToken::seal_successor(&token, &next).unwrap_or_default();
        assert_eq!(
            RefreshToken::open_successor(&token, &sealed)
                .map(|s| s.expose_secret().to_owned())
                .ok(),
            Some(next.expose_secret().to_owned())
        );
        assert!(
            RefreshToken::open_successor(&next, &sealed).is_err(),
            "only the spent token opens its successor"
        );
        let (other, other_hash) = RefreshToken::generate(org);
        assert_ne!(hash, other_hash);
        assert_ne!(token.expose_secret(), other.expose_secret());
        for bad in [
            "",
            "crt_",
            "crt_nope_abc",
            "xyz_0190d5a4000070008000000000000001_AAAA",
            &"crt_".repeat(50),
        ] {
            assert_eq!(
                RefreshToken::parse(&SecretString::from(bad.to_owned())),
                None,
                "{bad}"
            );
        }
    }
}
