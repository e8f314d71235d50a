//! Opaque pagination cursors bound to the organization that received them.
//!
//! A cursor is `base64url(position || tag)`, where the tag is an HMAC-SHA256
//! over the organization id, the listing's scope and the position. A cursor
//! replayed under another organization, for another listing, or altered in
//! any byte fails to open: it is refused, never used to peek at rows.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::OrgId;

const TAG_LEN: usize = 32;
/// Longest position a cursor may carry, in bytes.
pub const MAX_POSITION_LEN: usize = 128;
/// Longest cursor text accepted by [`CursorKey::open`].
pub const MAX_CURSOR_LEN: usize = (MAX_POSITION_LEN + TAG_LEN).div_ceil(3) * 4;

/// A cursor that could not be opened (malformed, altered, or from another
/// organization or listing). Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct InvalidCursor;

/// The secret key that seals and opens cursors.
pub struct CursorKey(SecretBox<[u8; 32]>);

impl CursorKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// A key derived from a configured secret of any length (SHA-256).
    pub fn from_secret(secret: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_bytes(Sha256::digest(secret).into())
    }

    /// A fresh random key (cursors then last as long as the process).
    pub fn random() -> Self {
        Self::from_bytes(rand::random())
    }

    /// Seals `position` for `org` and the listing `scope` into an opaque cursor.
    ///
    /// Positions longer than [`MAX_POSITION_LEN`] are a programming error
    /// and are truncated by the caller's contract; keep them short (an id).
    pub fn seal(&self, org: OrgId, scope: &str, position: &[u8]) -> String {
        let position = &position[..position.len().min(MAX_POSITION_LEN)];
        let mut out = Vec::with_capacity(position.len() + TAG_LEN);
        out.extend_from_slice(position);
        out.extend_from_slice(&self.tag(org, scope, position));
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a cursor sealed for `org` and `scope`, returning its position.
    pub fn open(&self, org: OrgId, scope: &str, cursor: &str) -> Result<Vec<u8>, InvalidCursor> {
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(InvalidCursor);
        }
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
        if raw.len() < TAG_LEN {
            return Err(InvalidCursor);
        }
        let (position, tag) = raw.split_at(raw.len() - TAG_LEN);
        self.mac(org, scope, position)
            .verify_slice(tag)
            .map_err(|_| InvalidCursor)?;
        Ok(position.to_vec())
    }

    fn tag(&self, org: OrgId, scope: &str, position: &[u8]) -> [u8; TAG_LEN] {
        self.mac(org, scope, position)
            .finalize()
            .into_bytes()
            .into()
    }

    fn mac(&self, org: OrgId, scope: &str, position: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"carapace-cursor-v1\0");
        mac.update(org.as_uuid().as_bytes());
        mac.update(&u64::try_from(scope.len()).unwrap_or(u64::MAX).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(position);
        mac
    }
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> OrgId {
        OrgId::generate()
    }

    #[test]
    fn round_trips_for_the_same_org_and_scope() {
        let key = CursorKey::random();
        let a = org();
        let c = key.seal(a, "patients", b"position-1");
        assert_eq!(key.open(a, "patients", &c), Ok(b"position-1".to_vec()));
    }

    #[test]
    fn refuses_another_org_scope_key_or_any_altered_byte() {
        let key = CursorKey::random();
        let a = org();
        let c = key.seal(a, "patients", b"position-1");
        assert_eq!(key.open(org(), "patients", &c), Err(InvalidCursor));
        assert_eq!(key.open(a, "users", &c), Err(InvalidCursor));
        assert_eq!(
            CursorKey::random().open(a, "patients", &c),
            Err(InvalidCursor)
        );
        let mut bytes = c.into_bytes();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap_or_default();
            assert_eq!(
                key.open(a, "patients", &altered),
                Err(InvalidCursor),
                "byte {i}"
            );
        }
        bytes.truncate(10);
        let short = String::from_utf8(bytes).unwrap_or_default();
        assert_eq!(key.open(a, "patients", &short), Err(InvalidCursor));
        assert_eq!(key.open(a, "patients", "not base64 !"), Err(InvalidCursor));
        assert_eq!(
            key.open(a, "patients", &"A".repeat(10_000)),
            Err(InvalidCursor)
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        assert_eq!(
            format!("{:?}", CursorKey::from_bytes([7; 32])),
            "CursorKey(<redacted>)"
        );
    }
}
