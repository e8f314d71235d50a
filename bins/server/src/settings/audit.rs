//! The audit trail: checkpoint signing, retention, and the witness
//! outside the database that every signed checkpoint is anchored in.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::checks::ConfigProblem;
use super::s3_location;

/// The audit trail: checkpoint signing, retention and anchoring.
#[derive(Clone, Debug)]
pub struct AuditSection {
    /// PKCS#8 PEM Ed25519 key signing audit checkpoints. In `dev`,
    /// generated into `<data_dir>/audit-signing-key.pem` when unset.
    pub signing_key_file: Option<PathBuf>,
    /// How long audit events are kept before `audit purge` may remove
    /// them (days; HIPAA's six years by default).
    pub retention_days: u32,
    /// Seconds between signed checkpoints of an organization's chain, and
    /// so between anchors in the witness: the longest stretch of newest
    /// events a database superuser could cut unseen while the witness
    /// answers.
    pub anchor_every_secs: u64,
    /// The witness outside the database.
    pub witness: WitnessSection,
}

/// The audit witness outside the database (an S3 bucket with Object Lock).
#[derive(Clone, Debug)]
pub struct WitnessSection {
    /// The witness outside the database that every signed checkpoint is
    /// also written to: `s3://bucket/prefix`, a bucket created with Object
    /// Lock enabled. Needs the `s3` feature (on by default).
    pub url: Option<String>,
    /// The witness's S3 endpoint; default `https://s3.<region>.amazonaws.com`
    /// (virtual-hosted buckets). A configured endpoint is addressed
    /// path-style (`<endpoint>/<bucket>/<key>`: MinIO and others).
    pub endpoint: Option<String>,
    /// Signing region of the witness; default `AWS_REGION`.
    pub region: Option<String>,
    /// Witness credentials (needing only `s3:PutObject`,
    /// `s3:PutObjectRetention`, `s3:GetObject`, `s3:GetObjectVersion` and
    /// `s3:ListBucketVersions`; no delete); default `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<SecretString>,
    /// Default `AWS_SESSION_TOKEN`.
    pub session_token: Option<SecretString>,
    /// Days each witness object is locked in compliance mode; default
    /// `audit_retention_days`.
    pub retention_days: Option<u32>,
    /// Seconds a checkpoint may wait for an unreachable witness before
    /// readiness fails and PHI routes answer 503 (fail closed).
    pub max_backlog_secs: u64,
    /// Let the witness be an `http://` loopback stand-in (tests; refused
    /// in production).
    pub allow_loopback: bool,
    /// Production without a witness: the operator accepts that a database
    /// superuser can cut the newest events, with their checkpoints, unseen.
    pub waived: bool,
}

impl AuditSection {
    /// The interval between checkpoints, and so between anchors.
    pub fn anchor_every(&self) -> Duration {
        Duration::from_secs(self.anchor_every_secs)
    }

    /// How long after its signing a checkpoint absent from the witness
    /// counts as never anchored: the interval, the backlog's bound and a
    /// minute's slack for clocks and passes.
    pub fn overdue(&self) -> Duration {
        self.anchor_every() + Duration::from_secs(self.witness.max_backlog_secs + 60)
    }

    /// Days each witness object is locked: the witness's own setting, else
    /// the retention period.
    pub fn witness_retention_days(&self) -> u32 {
        self.witness.retention_days.unwrap_or(self.retention_days)
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if !(1..=3600).contains(&self.anchor_every_secs) {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_ANCHOR_EVERY_SECS",
                "must be between 1 and 3600 seconds",
            ));
        }
        self.witness.problems(p);
        if !(1..=36_500).contains(&self.retention_days) {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_RETENTION_DAYS",
                "must be between 1 and 36500 days",
            ));
        }
    }
}

impl WitnessSection {
    /// The witness's bucket and key prefix, if `url` is a valid
    /// `s3://bucket[/prefix]`.
    pub fn bucket(&self) -> Option<(String, String)> {
        s3_location(self.url.as_deref()?)
    }

    /// The witness's endpoint: the configured one, else AWS's for the region.
    pub fn endpoint_url(&self) -> Option<url::Url> {
        match (&self.endpoint, &self.region) {
            (Some(e), _) => url::Url::parse(e).ok(),
            (None, Some(r)) => url::Url::parse(&format!("https://s3.{r}.amazonaws.com/")).ok(),
            (None, None) => None,
        }
    }

    /// Adds this section's problems to `p`.
    fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if !(1..=86_400).contains(&self.max_backlog_secs) {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_MAX_BACKLOG_SECS",
                "must be between 1 and 86400 seconds",
            ));
        }
        if self.url.is_none() {
            return;
        }
        if !cfg!(feature = "s3") {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_URL",
                "this build has no S3 witness (build with the `s3` feature)",
            ));
        }
        if self.bucket().is_none() {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_URL",
                "must be s3://bucket or s3://bucket/prefix (a valid bucket name; the prefix of letters, digits and -_./)",
            ));
        }
        let region_ok = self.region.as_deref().is_some_and(|r| {
            !r.is_empty()
                && r.len() <= 64
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !region_ok {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_REGION",
                "is required with CARAPACE_AUDIT_WITNESS_URL (or AWS_REGION), e.g. eu-west-1",
            ));
        }
        match self.endpoint_url() {
            Some(u) if u.scheme() == "https" && u.host().is_some() => {}
            Some(u) if u.scheme() == "http" && u.host().is_some() => {
                let loopback = match u.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(d)) => d == "localhost",
                    None => false,
                };
                if !(loopback && self.allow_loopback) {
                    p.push(ConfigProblem::new(
                        "CARAPACE_AUDIT_WITNESS_ENDPOINT",
                        "must be https (http only for a loopback stand-in with CARAPACE_AUDIT_WITNESS_ALLOW_LOOPBACK=true)",
                    ));
                }
            }
            Some(_) => p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_ENDPOINT",
                "must be an https URL",
            )),
            None if self.endpoint.is_some() => p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_ENDPOINT",
                "must be an https URL",
            )),
            None => {}
        }
        if self.access_key_id.as_deref().is_none_or(str::is_empty)
            || self.secret_access_key.is_none()
        {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID",
                "the witness needs credentials: CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID and CARAPACE_AUDIT_WITNESS_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            ));
        }
        if self
            .retention_days
            .is_some_and(|d| !(1..=36_500).contains(&d))
        {
            p.push(ConfigProblem::new(
                "CARAPACE_AUDIT_WITNESS_RETENTION_DAYS",
                "must be between 1 and 36500 days",
            ));
        }
    }
}
