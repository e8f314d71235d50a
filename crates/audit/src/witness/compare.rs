//! The comparison of a database's chain and checkpoints with what the
//! witness holds (pure): [`WitnessView::read`] checks the witnessed
//! objects, [`WitnessView::compare`] sets them against the database's side.

use std::collections::BTreeMap;
use std::fmt;

use carapace_tenancy::OrgId;
use ed25519_dalek::VerifyingKey;
use time::OffsetDateTime;

use super::{Witnessed, decode, object_name};
use crate::chain::{Checkpoint, CheckpointKind, Hash, hex};

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
