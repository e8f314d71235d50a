//! Field encryption under per-organization data keys.
//!
//! Each organization has data keys (DEKs), numbered by version, generated
//! randomly and stored only wrapped by the key-encryption key (through the
//! [`crate::SecretSealer`] port). A field is encrypted with AES-256-GCM, a
//! random 96-bit nonce, and associated data that binds it to its
//! organization, table, column and row: a ciphertext moved anywhere else
//! fails to decrypt. Format: `0x01 | key version (u32 BE) | nonce | ct+tag`.
//!
//! Searchable fields also get a blind index: HMAC-SHA256 under a key
//! derived (HMAC) from the organization's separate index root key, per table
//! and column, over a normalised value.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::SealError;

const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// Where a value lives; the binding is authenticated with the ciphertext.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// Organization id (16 bytes).
    pub org: &'a [u8; 16],
    /// Table name.
    pub table: &'a str,
    /// Column name.
    pub column: &'a str,
    /// Row id (16 bytes).
    pub row: &'a [u8; 16],
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"carapace-field-v1\0");
        aad.extend_from_slice(self.org);
        for part in [self.table, self.column] {
            aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad.extend_from_slice(self.row);
        aad
    }
}

/// Raw key material of one data-key version (zeroed on drop).
pub struct DataKeyMaterial {
    /// The encryption key.
    pub dek: Zeroizing<[u8; 32]>,
    /// The blind-index root key (separate from the encryption key).
    pub index_root: Zeroizing<[u8; 32]>,
}

impl DataKeyMaterial {
    /// Fresh random material.
    pub fn generate() -> Self {
        Self {
            dek: Zeroizing::new(rand::random()),
            index_root: Zeroizing::new(rand::random()),
        }
    }
}

/// An unwrapped data key of one organization and version.
pub struct DataKey {
    version: u32,
    cipher: Aes256Gcm,
    index_root: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A usable key from its material.
    pub fn new(version: u32, material: &DataKeyMaterial) -> Self {
        Self {
            version,
            cipher: Aes256Gcm::new((&*material.dek).into()),
            index_root: Zeroizing::new(*material.index_root),
        }
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Encrypts `plaintext` bound to `binding`.
    pub fn encrypt(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let ct = self
            .cipher
            .encrypt(
                &aes_gcm::Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: &binding.aad(),
                },
            )
            .map_err(|_| SealError::Key)?;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value encrypted for exactly `binding` under this key.
    pub fn decrypt(
        &self,
        binding: &Binding<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if key_version(sealed) != Some(self.version) || sealed.len() < HEADER_LEN {
            return Err(SealError::Open);
        }
        let nonce: [u8; NONCE_LEN] = sealed[5..HEADER_LEN]
            .try_into()
            .map_err(|_| SealError::Open)?;
        self.cipher
            .decrypt(
                &aes_gcm::Nonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &binding.aad(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }

    /// The blind index of an (already normalised) value in `table.column`.
    pub fn blind_index(&self, table: &str, column: &str, normalised: &[u8]) -> [u8; 32] {
        let mut derive = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&*self.index_root)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        derive.update(b"carapace-blind-index-v1\0");
        derive.update(table.as_bytes());
        derive.update(b"\0");
        derive.update(column.as_bytes());
        let column_key: Zeroizing<[u8; 32]> = Zeroizing::new(derive.finalize().into_bytes().into());
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&*column_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(normalised);
        mac.finalize().into_bytes().into()
    }
}

/// The key version a ciphertext was made with, if it is in a known format.
pub fn key_version(sealed: &[u8]) -> Option<u32> {
    match sealed {
        [FORMAT, a, b, c, d, ..] if sealed.len() >= HEADER_LEN => {
            Some(u32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

/// Normalisation before blind indexing: trimmed, Unicode lower-case, inner
/// white space collapsed to one space.
pub fn normalise(value: &str) -> String {
    value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: [u8; 16] = [1; 16];
    const ROW: [u8; 16] = [2; 16];

    fn key(version: u32) -> DataKey {
        DataKey::new(version, &DataKeyMaterial::generate())
    }

    fn at<'a>(org: &'a [u8; 16], column: &'a str, row: &'a [u8; 16]) -> Binding<'a> {
        Binding {
            org,
            table: "patients",
            column,
            row,
        }
    }

    #[test]
    fn round_trips_and_binds_to_org_table_column_and_row() {
        let k = key(3);
        let ct = k
            .encrypt(&at(&ORG, "given_name", &ROW), b"Jane")
            .unwrap_or_default();
        assert_eq!(key_version(&ct), Some(3));
        assert_eq!(
            k.decrypt(&at(&ORG, "given_name", &ROW), &ct)
                .map(|p| p.to_vec()),
            Ok(b"Jane".to_vec())
        );
        assert!(!ct.windows(4).any(|w| w == b"Jane"));
        for wrong in [
            at(&[9; 16], "given_name", &ROW),
            at(&ORG, "family_name", &ROW),
            at(&ORG, "given_name", &[9; 16]),
        ] {
            assert_eq!(
                k.decrypt(&wrong, &ct).map(|p| p.to_vec()),
                Err(SealError::Open)
            );
        }
        let other_table = Binding {
            table: "users",
            ..at(&ORG, "given_name", &ROW)
        };
        assert!(k.decrypt(&other_table, &ct).is_err());
    }

    #[test]
    fn tampering_wrong_key_and_wrong_version_fail_cleanly() {
        let k = key(1);
        let b = at(&ORG, "phone", &ROW);
        let ct = k.encrypt(&b, b"+1 555 0100").unwrap_or_default();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert!(k.decrypt(&b, &bad).is_err(), "byte {i}");
        }
        assert!(
            key(1).decrypt(&b, &ct).is_err(),
            "another key of the same version"
        );
        assert!(key(2).decrypt(&b, &ct).is_err(), "another version");
        assert!(k.decrypt(&b, &[]).is_err());
        assert!(k.decrypt(&b, &ct[..10]).is_err());
    }

    /// A million encryptions of one value: no nonce and no ciphertext twice.
    #[test]
    fn a_million_encryptions_never_repeat_a_nonce() {
        let k = key(1);
        let b = at(&ORG, "member_id", &ROW);
        let mut nonces = std::collections::HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let ct = k.encrypt(&b, b"M-778").unwrap_or_default();
            let nonce: [u8; NONCE_LEN] = ct[5..HEADER_LEN].try_into().unwrap_or_default();
            assert!(nonces.insert(nonce), "repeated nonce");
        }
    }

    #[test]
    fn blind_indexes_are_deterministic_exact_and_separated() {
        let k = key(1);
        let a = k.blind_index("patients", "member_id", normalise("  M-778 ").as_bytes());
        assert_eq!(
            a,
            k.blind_index("patients", "member_id", normalise("m-778").as_bytes())
        );
        assert_ne!(
            a,
            k.blind_index("patients", "member_id", normalise("M-7780").as_bytes())
        );
        assert_ne!(
            a,
            k.blind_index("patients", "phone", normalise("M-778").as_bytes()),
            "per column"
        );
        assert_ne!(
            a,
            key(1).blind_index("patients", "member_id", normalise("M-778").as_bytes()),
            "per org key"
        );
    }
}
