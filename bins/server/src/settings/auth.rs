//! Carapace's own credentials: dev tokens, local-account signing keys,
//! sessions, pagination cursors and the operator organization.

use std::path::PathBuf;

use secrecy::SecretString;

use super::Profile;
use super::checks::{ConfigProblem, short_secret};

/// Carapace's own credentials: dev tokens, local-account signing keys, sessions, cursors and the operator organization.
#[derive(Clone, Debug)]
pub struct AuthSection {
    /// Accept dev tokens; default: on in `dev`, off in `production`.
    pub dev_tokens: Option<bool>,
    /// HS256 secret for dev tokens (32+ bytes); in `dev` a random one is
    /// kept in `<data_dir>/dev-token-secret` when unset.
    pub dev_token_secret: Option<SecretString>,
    /// Key for pagination cursors (32+ bytes, the same on every instance);
    /// random per process when unset in `dev`.
    pub cursor_secret: Option<SecretString>,
    /// PKCS#8 PEM Ed25519 key that signs Carapace's own access tokens
    /// (local accounts). In `dev`, generated into
    /// `<data_dir>/signing-key.pem` when unset.
    pub signing_key_file: Option<PathBuf>,
    /// Earlier signing keys (comma-separated files), still accepted for
    /// verification after a rotation.
    pub signing_key_previous_files: Option<String>,
    /// Seconds in which a spent refresh token presented again (two tabs
    /// refreshing at once) gets the same successor instead of ending the
    /// session (0-60).
    pub refresh_grace_secs: u64,
    /// Slug of the organization whose MFA administrators may operate the
    /// deployment through the API (the kill switch); unset: only the CLI.
    pub operator_org: Option<String>,
}

impl AuthSection {
    /// Whether dev tokens are accepted under `profile`.
    pub fn dev_tokens_enabled(&self, profile: Profile) -> bool {
        self.dev_tokens.unwrap_or(profile == Profile::Dev)
    }

    /// Whether local accounts (and Carapace's own tokens) are on under
    /// `profile`: a signing key is configured, or the profile is `dev`
    /// (key generated).
    pub fn local_accounts_enabled(&self, profile: Profile) -> bool {
        self.signing_key_file.is_some() || profile == Profile::Dev
    }

    /// Session lifetimes, with the configured refresh grace window.
    pub fn session_limits(&self) -> carapace_auth::local::SessionLimits {
        carapace_auth::local::SessionLimits {
            grace: time::Duration::seconds(i64::try_from(self.refresh_grace_secs).unwrap_or(10)),
            ..carapace_auth::local::SessionLimits::default()
        }
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if self.refresh_grace_secs > 60 {
            p.push(ConfigProblem::new(
                "CARAPACE_REFRESH_GRACE_SECS",
                "must be between 0 and 60 seconds",
            ));
        }
        for (key, secret) in [
            ("CARAPACE_DEV_TOKEN_SECRET", &self.dev_token_secret),
            ("CARAPACE_CURSOR_SECRET", &self.cursor_secret),
        ] {
            if let Some(problem) = short_secret(key, secret.as_ref()) {
                p.push(problem);
            }
        }
    }
}
