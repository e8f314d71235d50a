//! The audit witness of these settings: an S3-compatible bucket with
//! Object Lock (feature `s3`), or none.

use std::sync::Arc;
use std::time::Duration;

use carapace_audit::witness::Witness;

use crate::settings::Config;

/// The configured witness (validated by [`Config::problems`]).
#[cfg(feature = "s3")]
pub fn audit_witness(settings: &Config) -> anyhow::Result<Option<Arc<dyn Witness>>> {
    use anyhow::Context as _;
    if settings.audit.witness.url.is_none() {
        return Ok(None);
    }
    let (bucket, prefix) = settings
        .audit
        .witness
        .bucket()
        .context("CARAPACE_AUDIT_WITNESS_URL must be s3://bucket/prefix")?;
    let s3 = carapace_infra::s3::S3WitnessSettings {
        endpoint: settings.audit.witness.endpoint_url().context(
            "CARAPACE_AUDIT_WITNESS_REGION or CARAPACE_AUDIT_WITNESS_ENDPOINT is required",
        )?,
        path_style: settings.audit.witness.endpoint.is_some(),
        bucket,
        prefix,
        region: settings
            .audit
            .witness
            .region
            .clone()
            .context("CARAPACE_AUDIT_WITNESS_REGION is required")?,
        access_key_id: settings
            .audit
            .witness
            .access_key_id
            .clone()
            .context("witness credentials are required")?,
        secret_access_key: settings
            .audit
            .witness
            .secret_access_key
            .clone()
            .context("witness credentials are required")?,
        session_token: settings.audit.witness.session_token.clone(),
        retention_days: settings.audit.witness_retention_days(),
        // One witness call at most.
        timeout: Duration::from_secs(5),
    };
    Ok(Some(Arc::new(carapace_infra::s3::S3Witness::new(&s3)?)))
}

/// The S3 archive at `bucket`/`prefix` (audit exports and retention
/// archives), reached with the witness's endpoint, region and credentials
/// (or the `AWS_*` variables), every object locked for `retention_days`.
#[cfg(feature = "s3")]
pub fn archive(
    settings: &Config,
    bucket: &str,
    prefix: &str,
    retention_days: u32,
) -> anyhow::Result<carapace_infra::s3::S3Archive> {
    use anyhow::Context as _;
    let endpoint = settings.audit.witness.endpoint_url().context(
        "an s3:// archive needs CARAPACE_AUDIT_WITNESS_REGION (or AWS_REGION) or CARAPACE_AUDIT_WITNESS_ENDPOINT",
    )?;
    let loopback = match endpoint.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let secure = endpoint.scheme() == "https"
        || (endpoint.scheme() == "http" && loopback && settings.audit.witness.allow_loopback);
    anyhow::ensure!(
        secure,
        "CARAPACE_AUDIT_WITNESS_ENDPOINT must be https (http only for a loopback stand-in with CARAPACE_AUDIT_WITNESS_ALLOW_LOOPBACK=true)"
    );
    let s3 = carapace_infra::s3::S3WitnessSettings {
        endpoint,
        path_style: settings.audit.witness.endpoint.is_some(),
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        region: settings
            .audit.witness.region
            .clone()
            .context("CARAPACE_AUDIT_WITNESS_REGION (or AWS_REGION) is required")?,
        access_key_id: settings
            .audit.witness.access_key_id
            .clone()
            .context("archive credentials are required (CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID)")?,
        secret_access_key: settings
            .audit.witness.secret_access_key
            .clone()
            .context("archive credentials are required (CARAPACE_AUDIT_WITNESS_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY)")?,
        session_token: settings.audit.witness.session_token.clone(),
        retention_days,
        // One 8 MiB part on a slow link.
        timeout: Duration::from_secs(300),
    };
    Ok(carapace_infra::s3::S3Archive::new(&s3)?)
}

/// Without the `s3` feature there is no witness.
#[cfg(not(feature = "s3"))]
pub fn audit_witness(settings: &Config) -> anyhow::Result<Option<Arc<dyn Witness>>> {
    if settings.audit.witness.url.is_some() {
        anyhow::bail!("this build has no S3 witness (build with the `s3` feature)");
    }
    Ok(None)
}
