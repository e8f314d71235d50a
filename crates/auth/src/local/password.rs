//! NIST SP 800-63B password rules and Argon2id hashing (OWASP parameters:
//! m = 19 MiB, t = 2, p = 1, the argon2 crate's defaults).

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use secrecy::{ExposeSecret as _, SecretString};

use crate::AuthError;

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 12;
/// Longest accepted password, in characters.
pub const MAX_LEN: usize = 128;

static COMMON: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    include_str!("../common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// A hash of a random password, verified against when the account does
/// not exist, so unknown users cost the same time as wrong passwords.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let random: [u8; 32] = rand::random();
    Argon2::default()
        .hash_password(&random)
        .ok()
        .map(|h| h.to_string())
});

/// Checks a new password: 12-128 characters, not a known common password.
/// No composition rules (SP 800-63B 5.1.1.2). The message never echoes it.
pub fn check_new_password(password: &SecretString) -> Result<(), &'static str> {
    let pw = password.expose_secret();
    let len = pw.chars().count();
    if len < MIN_LEN {
        return Err("must be at least 12 characters");
    }
    if len > MAX_LEN {
        return Err("must be at most 128 characters");
    }
    let lower = pw.to_lowercase();
    if COMMON.iter().any(|c| *c == lower) {
        return Err("is a commonly used password; choose another");
    }
    Ok(())
}

/// Hashes a password with Argon2id and a random salt (PHC string).
pub fn hash_password(password: &SecretString) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| AuthError::InvalidToken("password hashing failed"))
}

/// Whether `password` matches `stored`. With no stored hash (unknown user,
/// or an account without a password) a dummy hash is checked so the time
/// taken does not tell the cases apart; the answer is then always `false`.
pub fn verify_password(password: &SecretString, stored: Option<&str>) -> bool {
    let argon = Argon2::default();
    let pw = password.expose_secret().as_bytes();
    match stored {
        Some(hash) => argon.verify_password(pw, hash).is_ok(),
        None => {
            if let Some(dummy) = DUMMY_HASH.as_deref() {
                let _ = argon.verify_password(pw, dummy);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    #[test]
    fn length_and_common_password_rules() {
        assert!(check_new_password(&s("correct horse battery")).is_ok());
        assert!(check_new_password(&s("elevenchars")).is_err());
        assert!(check_new_password(&s(&"x".repeat(129))).is_err());
        assert!(
            check_new_password(&s(&"é".repeat(12))).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(
            check_new_password(&s("Password1234")),
            Err("is a commonly used password; choose another")
        );
        assert!(
            check_new_password(&s("only lowercase words here")).is_ok(),
            "no composition rules"
        );
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password(&s("a long enough passphrase")).unwrap_or_default();
        let b = hash_password(&s("a long enough passphrase")).unwrap_or_default();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "random salt");
        assert!(verify_password(&s("a long enough passphrase"), Some(&a)));
        assert!(!verify_password(&s("a long enough passphrasf"), Some(&a)));
        assert!(!verify_password(&s("anything"), None));
        assert!(!verify_password(&s("anything"), Some("not a phc string")));
    }
}
