//! The audit witness of these settings: an S3-compatible bucket with
//! Object Lock (feature `s3`), or none.

use std::sync::Arc;
use std::time::Duration;

use carapace_audit::witness::Witness;

use crate::settings::Settings;

/// The configured witness (validated by [`Settings::problems`]).
#[cfg(feature = "s3")]
pub fn audit_witness(settings: &Settings) -> anyhow::Result<Option<Arc<dyn Witness>>> {
    use anyhow::Context as _;
    if settings.audit_witness_url.is_none() {
        return Ok(None);
    }
    let (bucket, prefix) = settings
        .audit_witness_bucket()
        .context("CARAPACE_AUDIT_WITNESS_URL must be s3://bucket/prefix")?;
    let s3 = carapace_infra::s3::S3WitnessSettings {
        endpoint: settings.audit_witness_endpoint_url().context(
            "CARAPACE_AUDIT_WITNESS_REGION or CARAPACE_AUDIT_WITNESS_ENDPOINT is required",
        )?,
        path_style: settings.audit_witness_endpoint.is_some(),
        bucket,
        prefix,
        region: settings
            .audit_witness_region
            .clone()
            .context("CARAPACE_AUDIT_WITNESS_REGION is required")?,
        access_key_id: settings
            .audit_witness_access_key_id
            .clone()
            .context("witness credentials are required")?,
        secret_access_key: settings
            .audit_witness_secret_access_key
            .clone()
            .context("witness credentials are required")?,
        session_token: settings.audit_witness_session_token.clone(),
        retention_days: settings
            .audit_witness_retention_days
            .unwrap_or(settings.audit_retention_days),
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
    settings: &Settings,
    bucket: &str,
    prefix: &str,
    retention_days: u32,
) -> anyhow::Result<carapace_infra::s3::S3Archive> {
    use anyhow::Context as _;
    let endpoint = settings.audit_witness_endpoint_url().context(
        "an s3:// archive needs CARAPACE_AUDIT_WITNESS_REGION (or AWS_REGION) or CARAPACE_AUDIT_WITNESS_ENDPOINT",
    )?;
    let loopback = match endpoint.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let secure = endpoint.scheme() == "https"
        || (endpoint.scheme() == "http" && loopback && settings.audit_witness_allow_loopback);
    anyhow::ensure!(
        secure,
        "CARAPACE_AUDIT_WITNESS_ENDPOINT must be https (http only for a loopback stand-in with CARAPACE_AUDIT_WITNESS_ALLOW_LOOPBACK=true)"
    );
    let s3 = carapace_infra::s3::S3WitnessSettings {
        endpoint,
        path_style: settings.audit_witness_endpoint.is_some(),
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        region: settings
            .audit_witness_region
            .clone()
            .context("CARAPACE_AUDIT_WITNESS_REGION (or AWS_REGION) is required")?,
        access_key_id: settings
            .audit_witness_access_key_id
            .clone()
            .context("archive credentials are required (CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID)")?,
        secret_access_key: settings
            .audit_witness_secret_access_key
            .clone()
            .context("archive credentials are required (CARAPACE_AUDIT_WITNESS_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY)")?,
        session_token: settings.audit_witness_session_token.clone(),
        retention_days,
        // One 8 MiB part on a slow link.
        timeout: Duration::from_secs(300),
    };
    Ok(carapace_infra::s3::S3Archive::new(&s3)?)
}

/// Without the `s3` feature there is no witness.
#[cfg(not(feature = "s3"))]
pub fn audit_witness(settings: &Settings) -> anyhow::Result<Option<Arc<dyn Witness>>> {
    if settings.audit_witness_url.is_some() {
        anyhow::bail!("this build has no S3 witness (build with the `s3` feature)");
    }
    Ok(None)
}

/// The interval between checkpoints, and so between anchors.
pub fn anchor_every(settings: &Settings) -> Duration {
    Duration::from_secs(settings.audit_anchor_every_secs)
}

/// How long after its signing a checkpoint absent from the witness counts
/// as never anchored: the interval, the backlog's bound and a minute's
/// slack for clocks and passes.
pub fn overdue(settings: &Settings) -> Duration {
    anchor_every(settings) + Duration::from_secs(settings.audit_witness_max_backlog_secs + 60)
}
