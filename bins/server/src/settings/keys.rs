//! The key-encryption key: a local key file or a KMS key.

use std::path::PathBuf;

use secrecy::SecretString;

use super::checks::ConfigProblem;

/// The key-encryption key: a local key file or a KMS key.
#[derive(Clone, Debug)]
pub struct KeysSection {
    /// Local key-encryption key (64 hex characters) that seals secrets at
    /// rest (TOTP seeds). In `dev`, generated into `<data_dir>/master.key`
    /// when unset.
    pub master_key_file: Option<PathBuf>,
    /// KMS key (id, ARN or alias) that wraps the data keys instead of the
    /// local key file. Needs the `kms` feature (on by default).
    pub kms_key_id: Option<String>,
    /// KMS signing region (`eu-west-1`).
    pub kms_region: Option<String>,
    /// KMS endpoint; default `https://kms.<region>.amazonaws.com`.
    pub kms_endpoint: Option<String>,
    /// KMS credentials; default `AWS_ACCESS_KEY_ID`.
    pub kms_access_key_id: Option<String>,
    /// Default `AWS_SECRET_ACCESS_KEY`.
    pub kms_secret_access_key: Option<SecretString>,
    /// Default `AWS_SESSION_TOKEN`.
    pub kms_session_token: Option<SecretString>,
}

impl KeysSection {
    /// The KMS endpoint in use: the configured one, else AWS's for the region.
    pub fn kms_endpoint_url(&self) -> Option<url::Url> {
        match (&self.kms_endpoint, &self.kms_region) {
            (Some(e), _) => url::Url::parse(e).ok(),
            (None, Some(r)) => url::Url::parse(&format!("https://kms.{r}.amazonaws.com/")).ok(),
            (None, None) => None,
        }
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if self.kms_key_id.is_none() {
            return;
        }
        if !cfg!(feature = "kms") {
            p.push(ConfigProblem::new(
                "CARAPACE_KMS_KEY_ID",
                "this build has no KMS support (build with the `kms` feature)",
            ));
        }
        if self.master_key_file.is_some() {
            p.push(ConfigProblem::new(
                "CARAPACE_MASTER_KEY_FILE",
                "set either this or CARAPACE_KMS_KEY_ID, not both",
            ));
        }
        if self
            .kms_key_id
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.len() > 2048)
        {
            p.push(ConfigProblem::new(
                "CARAPACE_KMS_KEY_ID",
                "must be 1 to 2048 characters",
            ));
        }
        let region_ok = self.kms_region.as_deref().is_some_and(|r| {
            !r.is_empty()
                && r.len() <= 64
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !region_ok {
            p.push(ConfigProblem::new(
                "CARAPACE_KMS_REGION",
                "is required with CARAPACE_KMS_KEY_ID (or AWS_REGION), e.g. eu-west-1",
            ));
        }
        let endpoint_ok = self.kms_endpoint.is_none()
            || self
                .kms_endpoint_url()
                .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !endpoint_ok {
            p.push(ConfigProblem::new(
                "CARAPACE_KMS_ENDPOINT",
                "must be an http(s) URL",
            ));
        }
        if self.kms_access_key_id.as_deref().is_none_or(str::is_empty)
            || self.kms_secret_access_key.is_none()
        {
            p.push(ConfigProblem::new(
                "CARAPACE_KMS_ACCESS_KEY_ID",
                "KMS needs credentials: CARAPACE_KMS_ACCESS_KEY_ID and CARAPACE_KMS_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            ));
        }
    }
}
