//! A witness outside the database: every signed checkpoint is also written
//! to a store the database's owner cannot rewrite (an S3-compatible bucket
//! with Object Lock in compliance mode), and verification compares the
//! database's chain and checkpoints with what the witness holds.
//!
//! This module owns the [`Witness`] port, the one encoding of a checkpoint
//! as a witness object ([`encode`], [`decode`], [`object_name`]) and the
//! pure comparison ([`WitnessView::read`], [`WitnessView::compare`]). It
//! does no IO: adapters (infra) store and list objects, the storage side
//! reads the database.
//!
//! What the comparison finds, each named with what is missing:
//! - the chain ends before the head the witness anchored (a tail cut, or
//!   the whole database restored from an older copy): [`WitnessFinding::Short`];
//! - a witnessed checkpoint the database does not have (deleted, or never
//!   had: a restore): [`WitnessFinding::Missing`];
//! - a database checkpoint that differs from the witnessed one (altered):
//!   [`WitnessFinding::Differs`];
//! - the chain's link at a witnessed position is not the witnessed one
//!   (history rewritten, or written anew after a restore):
//!   [`WitnessFinding::ChainDiffers`];
//! - two different signed checkpoints at one position in the witness (the
//!   chain forked: a restored database signed the position again over
//!   other events): [`WitnessFinding::Fork`];
//! - an object that is not a checkpoint of this organization signed by the
//!   audit key, or not under its own name: [`WitnessFinding::Forged`];
//! - a deletion asked of the witness (its locked versions remain):
//!   [`WitnessFinding::DeleteMarker`];
//! - a database checkpoint long signed that the witness still lacks
//!   (anchoring stopped): [`WitnessFinding::NotAnchored`].

use std::future::Future;
use std::pin::Pin;

use carapace_tenancy::OrgId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::chain::{Checkpoint, CheckpointKind, hex};
use crate::export::unhex;

mod compare;

pub use compare::{DatabaseSide, WitnessFinding, WitnessReport, WitnessView, unknown_orgs};

/// The version of the witness object format.
pub const FORMAT: u32 = 1;

/// Why the witness could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// It did not answer (network, timeout, DNS).
    #[error("witness unreachable: {0}")]
    Unreachable(String),
    /// It answered with a refusal (status and the store's error code).
    #[error("witness refused: {0}")]
    Refused(String),
    /// Its answer could not be read.
    #[error("witness answer unreadable: {0}")]
    Malformed(String),
}

impl WitnessError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "witness_unreachable",
            Self::Refused(_) => "witness_refused",
            Self::Malformed(_) => "witness_malformed",
        }
    }
}

/// What a witness call returns.
pub type WitnessFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, WitnessError>> + Send + 'a>>;

/// One stored version under an organization's names in the witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Witnessed {
    /// An object version and its bytes.
    Object {
        /// Its name relative to the witness's prefix (`<org>/<position>-<kind>.json`).
        name: String,
        /// The store's version id, if it keeps versions.
        version: Option<String>,
        /// Its bytes.
        body: Vec<u8>,
    },
    /// A deletion was asked for `name`: the store hides the object from
    /// plain listings, while its locked versions remain.
    DeleteMarker {
        /// The name.
        name: String,
        /// The marker's version id.
        version: Option<String>,
    },
}

/// One stored version under an organization's names, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its name relative to the witness's prefix.
    pub name: String,
    /// The store's version id, if it keeps versions.
    pub version: Option<String>,
    /// The store's digest of the bytes, when it is their MD5 (lower-case
    /// hex; compare with [`etag`]).
    pub etag: Option<String>,
    /// A deletion marker rather than an object.
    pub delete_marker: bool,
}

/// A store outside the database that keeps what is written to it.
pub trait Witness: Send + Sync {
    /// Writes `checkpoint` under [`object_name`], locked against deletion
    /// and overwrite for the retention period. Writing the same checkpoint
    /// again is harmless.
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> WitnessFuture<'a, ()>;

    /// Every version of every object under `org`'s names, deletion markers
    /// included.
    fn list(&self, org: OrgId) -> WitnessFuture<'_, Vec<Listed>>;

    /// The bytes of one listed version.
    fn get<'a>(&'a self, name: &'a str, version: Option<&'a str>) -> WitnessFuture<'a, Vec<u8>>;

    /// The names of the organizations the witness holds objects of.
    fn orgs(&self) -> WitnessFuture<'_, Vec<String>>;
}

/// The name of `checkpoint`'s object: `<org>/<position:020>-<kind>.json`
/// (sorted by position within the organization).
pub fn object_name(checkpoint: &Checkpoint) -> String {
    format!(
        "{}/{:020}-{}.json",
        checkpoint.org,
        checkpoint.position,
        checkpoint.kind.as_str()
    )
}

/// The MD5 of `checkpoint`'s object bytes (lower-case hex): what S3
/// reports as the ETag of a single-part upload without KMS encryption.
/// A listed version whose ETag equals the database checkpoint's need not
/// be fetched: its bytes are that checkpoint's (whose signature is
/// checked either way).
pub fn etag(checkpoint: &Checkpoint) -> String {
    use md5::Digest as _;
    crate::export::bytes_hex(&md5::Md5::digest(encode(checkpoint)))
}

/// The position an object name claims (`<org>/<position>-<kind>.json`).
pub fn position_in(name: &str) -> Option<u64> {
    let file = name.rsplit('/').next()?;
    let (digits, _) = file.split_once('-')?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The object body of a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    format: u32,
    org: OrgId,
    kind: String,
    position: u64,
    link: String,
    signed_at: i64,
    signature: String,
}

/// The object bytes of `checkpoint` (JSON; the signature covers every field).
pub fn encode(checkpoint: &Checkpoint) -> Vec<u8> {
    serde_json::to_vec(&Body {
        format: FORMAT,
        org: checkpoint.org,
        kind: checkpoint.kind.as_str().to_owned(),
        position: checkpoint.position,
        link: hex(&checkpoint.link),
        signed_at: checkpoint.signed_at.unix_timestamp(),
        signature: crate::export::bytes_hex(&checkpoint.signature),
    })
    .unwrap_or_default()
}

/// Parses [`encode`]'s bytes (the signature is not checked here).
pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    let body: Body = serde_json::from_slice(bytes).ok()?;
    if body.format != FORMAT {
        return None;
    }
    Some(Checkpoint {
        org: body.org,
        kind: CheckpointKind::parse(&body.kind)?,
        position: body.position,
        link: unhex(&body.link)?.try_into().ok()?,
        signed_at: OffsetDateTime::from_unix_timestamp(body.signed_at).ok()?,
        signature: unhex(&body.signature)?.try_into().ok()?,
    })
}

#[cfg(test)]
#[path = "witness/tests.rs"]
mod tests;
