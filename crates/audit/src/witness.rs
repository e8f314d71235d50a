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

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use carapace_tenancy::OrgId;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::chain::{Checkpoint, CheckpointKind, Hash, hex};
use crate::export::unhex;

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

/// Something the witness shows to be wrong with the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WitnessFinding {
    /// The chain ends before the head the witness anchored.
    Short {
        /// The last position the database holds.
        ends_at: u64,
        /// The furthest position the witness anchored.
        anchored: u64,
        /// The witnessed link there.
        link: Hash,
    },
    /// A witnessed checkpoint the database does not have.
    Missing {
        /// Head or tombstone.
        kind: CheckpointKind,
        /// Its position.
        position: u64,
        /// When it was signed.
        signed_at: OffsetDateTime,
    },
    /// The database's checkpoint differs from the witnessed one.
    Differs {
        /// Head or tombstone.
        kind: CheckpointKind,
        /// Its position.
        position: u64,
    },
    /// The chain at a witnessed position is not what the witness anchored.
    ChainDiffers {
        /// The position.
        position: u64,
    },
    /// Two different signed checkpoints of one kind at one position.
    Fork {
        /// Head or tombstone.
        kind: CheckpointKind,
        /// The position.
        position: u64,
    },
    /// An object that is not a checkpoint of this organization signed by
    /// the audit key under its own name.
    Forged {
        /// The object's name (and version).
        name: String,
    },
    /// A deletion was asked of the witness.
    DeleteMarker {
        /// The object's name (and version).
        name: String,
    },
    /// A database checkpoint signed long enough ago to have been anchored,
    /// which the witness does not hold.
    NotAnchored {
        /// Head or tombstone.
        kind: CheckpointKind,
        /// Its position.
        position: u64,
        /// When it was signed.
        signed_at: OffsetDateTime,
    },
}

impl WitnessFinding {
    /// The position the finding is about (0 for objects without one).
    pub fn position(&self) -> u64 {
        match self {
            Self::Short { ends_at, .. } => ends_at + 1,
            Self::Missing { position, .. }
            | Self::Differs { position, .. }
            | Self::ChainDiffers { position }
            | Self::Fork { position, .. }
            | Self::NotAnchored { position, .. } => *position,
            Self::Forged { .. } | Self::DeleteMarker { .. } => 0,
        }
    }
}

fn when(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl fmt::Display for WitnessFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short {
                ends_at,
                anchored,
                link,
            } => write!(
                f,
                "chain ends at {ends_at}, witness anchored head at {anchored} (link {}): positions {}..={anchored} are missing (cut, or the database was restored from an older copy)",
                hex(link),
                ends_at + 1
            ),
            Self::Missing {
                kind,
                position,
                signed_at,
            } => write!(
                f,
                "witnessed {} checkpoint at {position} (signed {}) is missing from the database",
                kind.as_str(),
                when(*signed_at)
            ),
            Self::Differs { kind, position } => write!(
                f,
                "database {} checkpoint at {position} differs from the witnessed one",
                kind.as_str()
            ),
            Self::ChainDiffers { position } => write!(
                f,
                "the chain at position {position} is not what the witness anchored (history rewritten, or written anew after a restore)"
            ),
            Self::Fork { kind, position } => write!(
                f,
                "the witness holds two different {} checkpoints at {position}: the chain forked (the database was restored and signed the position again over other events)",
                kind.as_str()
            ),
            Self::Forged { name } => write!(
                f,
                "witness object {name} is not a checkpoint of this organization signed by the audit key under its own name (forged)"
            ),
            Self::DeleteMarker { name } => write!(
                f,
                "someone asked the witness to delete {name} (its locked versions remain)"
            ),
            Self::NotAnchored {
                kind,
                position,
                signed_at,
            } => write!(
                f,
                "database {} checkpoint at {position} (signed {}) was never anchored in the witness",
                kind.as_str(),
                when(*signed_at)
            ),
        }
    }
}

/// The database's side of the comparison, as the storage layer read it.
#[derive(Clone, Debug, Default)]
pub struct DatabaseSide {
    /// The last chain position stored (the latest tombstone's position
    /// when retention left none; 0 for an empty chain).
    pub ends_at: u64,
    /// The latest tombstone's position: positions up to it were removed
    /// by retention (0 when none were).
    pub starts_after: u64,
    /// The stored link at each position the witness names (absent when
    /// the position is not stored).
    pub links: BTreeMap<u64, Hash>,
    /// Every stored checkpoint of the organization, as stored.
    pub checkpoints: Vec<Checkpoint>,
}

/// The witnessed checkpoints of one organization, read and checked.
#[derive(Clone, Debug)]
pub struct WitnessView {
    org: OrgId,
    key: VerifyingKey,
    /// Validly signed, distinct checkpoints, by (kind, position).
    checkpoints: BTreeMap<(u64, &'static str), Vec<Checkpoint>>,
    findings: Vec<WitnessFinding>,
}

/// The outcome of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessReport {
    /// What is wrong, by position; empty when the database agrees.
    pub findings: Vec<WitnessFinding>,
    /// The furthest position the witness anchored (0 if none).
    pub anchored: u64,
    /// Witnessed checkpoints the database holds unchanged.
    pub matched: u64,
    /// Database checkpoints the witness does not hold yet.
    pub unanchored: u64,
}

impl WitnessView {
    /// Reads `org`'s witness objects: each must be a checkpoint of `org`
    /// signed with `key` under its own [`object_name`]; anything else is a
    /// finding and takes no part in the comparison.
    pub fn read(org: OrgId, objects: &[Witnessed], key: &VerifyingKey) -> Self {
        let mut view = Self {
            org,
            key: *key,
            checkpoints: BTreeMap::new(),
            findings: Vec::new(),
        };
        for object in objects {
            match object {
                Witnessed::DeleteMarker { name, version } => {
                    view.findings.push(WitnessFinding::DeleteMarker {
                        name: shown(name, version.as_deref()),
                    });
                }
                Witnessed::Object {
                    name,
                    version,
                    body,
                } => match decode(body) {
                    Some(cp)
                        if cp.org == org && cp.is_signed_by(key) && object_name(&cp) == *name =>
                    {
                        let same = view
                            .checkpoints
                            .entry((cp.position, cp.kind.as_str()))
                            .or_default();
                        if !same.contains(&cp) {
                            same.push(cp);
                        }
                    }
                    _ => view.findings.push(WitnessFinding::Forged {
                        name: shown(name, version.as_deref()),
                    }),
                },
            }
        }
        for ((position, _), versions) in &view.checkpoints {
            let first = &versions[0];
            if versions.iter().any(|c| c.link != first.link) {
                view.findings.push(WitnessFinding::Fork {
                    kind: first.kind,
                    position: *position,
                });
            }
        }
        view
    }

    /// Compares the database's side with the witness. A database
    /// checkpoint signed before `now - overdue` that the witness does not
    /// hold, while the witness holds an older one of the organization, was
    /// never anchored: a finding.
    pub fn compare(
        self,
        db: &DatabaseSide,
        now: OffsetDateTime,
        overdue: time::Duration,
    ) -> WitnessReport {
        let Self {
            org,
            key,
            checkpoints: witnessed,
            mut findings,
        } = self;
        let mut matched = 0;
        let mut anchored = 0;
        let mut anchored_link = None;
        let stored = |kind: CheckpointKind, position: u64| {
            db.checkpoints
                .iter()
                .filter(move |c| c.kind == kind && c.position == position)
        };
        for ((position, _), versions) in &witnessed {
            let (position, first) = (*position, &versions[0]);
            let kind = first.kind;
            if position >= anchored {
                anchored = position;
                anchored_link = Some(first.link);
            }
            // Checkpoints inside the prefix retention removed say nothing
            // about the chain any more; the database may drop them.
            let retired = position < db.starts_after
                || (kind == CheckpointKind::Head && position == db.starts_after);
            let mut ours = stored(kind, position).peekable();
            if ours.peek().is_none() {
                if !retired {
                    findings.push(WitnessFinding::Missing {
                        kind,
                        position,
                        signed_at: first.signed_at,
                    });
                }
            } else if ours.all(|c| {
                c.org == org && c.is_signed_by(&key) && versions.iter().any(|w| w.link == c.link)
            }) {
                matched += 1;
            } else {
                findings.push(WitnessFinding::Differs { kind, position });
            }
            if kind == CheckpointKind::Head
                && position > db.starts_after
                && position <= db.ends_at
                && db
                    .links
                    .get(&position)
                    .is_none_or(|l| versions.iter().all(|w| w.link != *l))
            {
                findings.push(WitnessFinding::ChainDiffers { position });
            }
        }
        if anchored > db.ends_at
            && let Some(link) = anchored_link
        {
            findings.push(WitnessFinding::Short {
                ends_at: db.ends_at,
                anchored,
                link,
            });
        }
        let first_witnessed = witnessed
            .values()
            .flat_map(|v| v.iter().map(|c| c.signed_at))
            .min();
        let mut unanchored = 0;
        for c in &db.checkpoints {
            if witnessed.contains_key(&(c.position, c.kind.as_str())) {
                continue;
            }
            unanchored += 1;
            if first_witnessed.is_some_and(|first| c.signed_at > first)
                && c.signed_at + overdue < now
            {
                findings.push(WitnessFinding::NotAnchored {
                    kind: c.kind,
                    position: c.position,
                    signed_at: c.signed_at,
                });
            }
        }
        findings.sort_by_key(WitnessFinding::position);
        WitnessReport {
            findings,
            anchored,
            matched,
            unanchored,
        }
    }
}

fn shown(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{name} (version {v})"),
        None => name.to_owned(),
    }
}

/// The organizations the witness holds objects of that `known` does not
/// name: a database restored from a copy older than their creation.
pub fn unknown_orgs(witnessed: &[String], known: &[OrgId]) -> Vec<String> {
    witnessed
        .iter()
        .filter(|name| {
            uuid::Uuid::parse_str(name)
                .ok()
                .map(OrgId::from_uuid)
                .filter(|org| org.to_string() == **name)
                .is_none_or(|org| !known.contains(&org))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
#[path = "witness/tests.rs"]
mod tests;
