//! PHI handling.
//!
//! This crate owns the [`Phi`] wrapper: every piece of protected health
//! information travels inside it, so that `Debug` and `Display` print
//! `<redacted>` and the only way to the value is the greppable
//! [`Phi::expose_phi`]; and the [`SecretSealer`] key-provider port that
//! wraps data keys and seals secrets at rest; and envelope encryption of PHI
//! ([`envelope`]). The
//! crate never touches a database, the network, or a log.

pub mod envelope;
pub mod identifiers;
mod sealer;

pub use sealer::{LocalSealer, SealError, SealFuture, SecretSealer};

use std::fmt;

/// A piece of protected health information.
///
/// Formatting never shows the value. There is deliberately no `Serialize`:
/// response types expose PHI explicitly, in one place.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    /// Wraps a value as PHI.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value. Every call site is a place where PHI leaves its wrapper.
    pub fn expose_phi(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_exposed_phi(self) -> T {
        self.0
    }

    /// Maps the wrapped value, keeping it wrapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Phi<U> {
        Phi(f(self.0))
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> From<T> for Phi<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[expect(dead_code, reason = "only formatted")]
    struct Record {
        name: Phi<String>,
        dob: Phi<Option<&'static str>>,
    }

    #[test]
    fn phi_debug_and_display_redact() {
        let r = Record {
            name: Phi::new("Jane Roe".to_owned()),
            dob: Phi::new(Some("1980-02-03")),
        };
        let printed = format!("{r:?} {r:#?} {}", r.name);
        assert!(!printed.contains("Jane"), "{printed}");
        assert!(!printed.contains("1980"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert_eq!(r.name.expose_phi(), "Jane Roe");
    }
}
