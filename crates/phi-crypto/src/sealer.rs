//! Sealing small secrets at rest (TOTP seeds today; per-tenant data keys
//! with the PHI-encryption work): AES-256-GCM under a key-encryption key,
//! bound to a context string so a sealed value cannot be moved to another
//! row or purpose.

use std::future::Future;
use std::pin::Pin;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A sealing failure. Deliberately without detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key is unusable.
    #[error("key unavailable")]
    Key,
    /// The sealed value is malformed, altered, or sealed for another context.
    #[error("cannot open sealed value")]
    Open,
}

/// What a key provider's operations return: a boxed future, so the port
/// can be a trait object and a remote provider (KMS) can wait on the
/// network.
pub type SealFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, SealError>> + Send + 'a>>;

/// The key-provider port: wraps data keys and seals small secrets under a
/// key-encryption key the caller never sees. Implementations: a local key
/// file ([`LocalSealer`]) and, in `carapace-infra` (feature `kms`), AWS
/// KMS or any service speaking its API.
pub trait SecretSealer: Send + Sync {
    /// Encrypts `plaintext`, bound to `context` (e.g. `"totp:<org>:<user>"`).
    fn seal<'a>(&'a self, context: &'a [u8], plaintext: &'a [u8]) -> SealFuture<'a>;
    /// Decrypts a value sealed for exactly this `context`.
    fn open<'a>(&'a self, context: &'a [u8], sealed: &'a [u8]) -> SealFuture<'a>;
}

/// AES-256-GCM with a 32-byte key held in memory (from
/// `CARAPACE_MASTER_KEY_FILE`). Output: version byte, 96-bit random nonce,
/// ciphertext and tag.
pub struct LocalSealer {
    cipher: Aes256Gcm,
}

impl LocalSealer {
    /// A sealer for `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }
}

impl std::fmt::Debug for LocalSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalSealer(<key redacted>)")
    }
}

impl SecretSealer for LocalSealer {
    fn seal<'a>(&'a self, context: &'a [u8], plaintext: &'a [u8]) -> SealFuture<'a> {
        Box::pin(std::future::ready(self.seal_now(context, plaintext)))
    }

    fn open<'a>(&'a self, context: &'a [u8], sealed: &'a [u8]) -> SealFuture<'a> {
        Box::pin(std::future::ready(self.open_now(context, sealed)))
    }
}

impl LocalSealer {
    /// [`SecretSealer::seal`] without the future: the key is in memory.
    pub fn seal_now(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = aes_gcm::Nonce::from(nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Key)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// [`SecretSealer::open`] without the future.
    pub fn open_now(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Open)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce_bytes: [u8; NONCE_LEN] = nonce_bytes.try_into().map_err(|_| SealError::Open)?;
        self.cipher
            .decrypt(
                &aes_gcm::Nonce::from(nonce_bytes),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_only_for_the_same_key_and_context() {
        let sealer = LocalSealer::new(&[7; 32]);
        let sealed = sealer
            .seal_now(b"totp:a", b"secret seed")
            .unwrap_or_default();
        assert_eq!(
            sealer.open_now(b"totp:a", &sealed),
            Ok(b"secret seed".to_vec())
        );
        assert!(
            !sealed.windows(11).any(|w| w == b"secret seed"),
            "ciphertext hides the value"
        );
        assert_eq!(
            sealer.open_now(b"totp:b", &sealed),
            Err(SealError::Open),
            "bound to its context"
        );
        assert_eq!(
            LocalSealer::new(&[8; 32]).open_now(b"totp:a", &sealed),
            Err(SealError::Open)
        );
        let mut altered = sealed.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(sealer.open_now(b"totp:a", &altered), Err(SealError::Open));
        assert_ne!(
            sealer
                .seal_now(b"totp:a", b"secret seed")
                .unwrap_or_default(),
            sealed,
            "random nonce"
        );
        assert_eq!(sealer.open_now(b"totp:a", &[]), Err(SealError::Open));
    }
}
