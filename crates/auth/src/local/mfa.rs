//! TOTP (RFC 6238) second factor and single-use recovery codes: pure
//! helpers and the storage port. Seeds are stored sealed through the
//! [`carapace_phi_crypto::SecretSealer`] port; recovery codes as hashes.

use std::future::Future;

use carapace_tenancy::TenantContext;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use totp_rs::{Algorithm, Builder, Totp};

use super::UserId;
use crate::AuthError;

/// Bytes of a TOTP seed (160 bits, as RFC 4226 recommends).
pub const SEED_LEN: usize = 20;
/// Recovery codes issued at activation.
pub const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "Carapace";
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A user's TOTP enrolment as stored.
#[derive(Clone)]
pub struct TotpState {
    /// The seed, sealed for this user.
    pub sealed_seed: Vec<u8>,
    /// Whether activation completed.
    pub enabled: bool,
}

impl std::fmt::Debug for TotpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpState")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Storage of TOTP enrolments and recovery codes.
pub trait MfaStore: Send + Sync {
    /// The user's enrolment, if any.
    fn totp_state(
        &self,
        ctx: &TenantContext,
        user: UserId,
    ) -> impl Future<Output = Result<Option<TotpState>, AuthError>> + Send;

    /// Stores a pending (not yet enabled) seed; refused (`false`) when TOTP
    /// is already enabled.
    fn set_pending_totp(
        &self,
        ctx: &TenantContext,
        user: UserId,
        sealed_seed: Vec<u8>,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Enables the pending seed, marks `step` used, stores the recovery
    /// code hashes (replacing any earlier ones) and, in the same
    /// transaction, ends every other session of the account but `keep`
    /// (a credential change ends the other sessions, ASVS 7.4.3).
    fn enable_totp(
        &self,
        ctx: &TenantContext,
        user: UserId,
        step: u64,
        recovery_hashes: Vec<[u8; 32]>,
        keep: Option<super::SessionId>,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Spends the MFA challenge `id` (expiring at `expires_at`): `true`
    /// the first time only, however many requests race with it.
    fn spend_challenge(
        &self,
        ctx: &TenantContext,
        id: uuid::Uuid,
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Atomically records `step` as used if it is later than the last used
    /// one; `false` means a replay.
    fn claim_totp_step(
        &self,
        ctx: &TenantContext,
        user: UserId,
        step: u64,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Atomically spends an unused recovery code; `false` if there is none.
    fn use_recovery_code(
        &self,
        ctx: &TenantContext,
        user: UserId,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// A new random seed.
pub fn new_seed() -> [u8; SEED_LEN] {
    rand::random()
}

/// The TOTP generator for `seed`: SHA-1, 6 digits, 30 s steps, one step of
/// skew either way (what authenticator apps implement).
pub fn totp(seed: &[u8], account: &str) -> Result<Totp, AuthError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(seed.to_vec())
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|_| AuthError::Unavailable)
}

/// The `otpauth://` URI an authenticator app enrols from.
pub fn otpauth_uri(seed: &[u8], account: &str) -> Result<SecretString, AuthError> {
    totp(seed, account)?
        .to_url()
        .map(SecretString::from)
        .map_err(|_| AuthError::Unavailable)
}

/// The time step a `code` is valid for at `now_unix`, if any (within one
/// step of skew). Codes that are not six digits never match.
pub fn check_code(seed: &[u8], code: &str, now_unix: u64) -> Option<u64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(seed, "user").ok()?.check(code, now_unix)
}

/// Fresh recovery codes (`xxxxx-xxxxx`, about 49 bits each).
pub fn new_recovery_codes() -> Vec<SecretString> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw: [u8; 10] = rand::random();
            let chars: String = raw
                .iter()
                .map(|b| char::from(RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()]))
                .collect();
            SecretString::from(format!("{}-{}", &chars[..5], &chars[5..]))
        })
        .collect()
}

/// The stored hash of a recovery code (case, spaces and dashes ignored).
pub fn recovery_hash(code: &SecretString) -> [u8; 32] {
    let normal: String = code
        .expose_secret()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normal.as_bytes()).into()
}

/// The context a user's seed is sealed under.
pub fn seed_context(ctx: &TenantContext, user: UserId) -> Vec<u8> {
    format!("totp:{}:{}", ctx.org(), user).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_within_one_step_of_skew() {
        let seed = [42u8; SEED_LEN];
        let t = totp(&seed, "doc@example.org").unwrap_or_else(|e| panic!("{e}"));
        let now = 1_800_000_000u64;
        let code = t.generate(now).to_string();
        assert_eq!(check_code(&seed, &code, now), Some(now / 30));
        assert_eq!(
            check_code(&seed, &code, now + 30),
            Some(now / 30),
            "one step late is fine"
        );
        assert_eq!(
            check_code(&seed, &code, now + 90),
            None,
            "three steps late is not"
        );
        assert_eq!(check_code(&seed, "12345", now), None);
        assert_eq!(check_code(&seed, "abcdef", now), None);
        assert_eq!(check_code(&[1u8; SEED_LEN], &code, now), None);
    }

    #[test]
    fn otpauth_uri_names_issuer_and_account() {
        let uri =
            otpauth_uri(&[1u8; SEED_LEN], "doc@example.org").unwrap_or_else(|e| panic!("{e}"));
        let uri = uri.expose_secret();
        assert!(
            uri.starts_with("otpauth://totp/Carapace:doc%40example.org?"),
            "{uri}"
        );
        assert!(uri.contains("secret=") && uri.contains("issuer=Carapace"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_leniently() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut hashes: Vec<[u8; 32]> = codes.iter().map(recovery_hash).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), RECOVERY_CODES);
        let code = codes[0].expose_secret().to_owned();
        let sloppy = SecretString::from(format!(" {} ", code.to_uppercase().replace('-', "")));
        assert_eq!(recovery_hash(&sloppy), recovery_hash(&codes[0]));
    }
}
