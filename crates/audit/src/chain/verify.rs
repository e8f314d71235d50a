//! The chain verifier: stored entries checked in position order against
//! the hashes, the stored columns and the signed checkpoints.

use carapace_tenancy::OrgId;
use ed25519_dalek::VerifyingKey;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Checkpoint, CheckpointKind, Hash, genesis, leaf_hash, link_hash};
use crate::event::AuditEvent;

/// The searchable columns stored beside an event's canonical bytes, as
/// stored (what filters and listings read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredColumns {
    /// When (`recorded_at`).
    pub at: OffsetDateTime,
    /// The actor.
    pub actor: String,
    /// The action.
    pub action: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource id.
    pub resource_id: Option<String>,
    /// The outcome's stored name.
    pub outcome: String,
}

impl StoredColumns {
    /// The columns an intact row stores for `event`.
    pub fn of(event: &AuditEvent) -> Self {
        Self {
            at: event.at,
            actor: event.actor.as_str().to_owned(),
            action: event.action.clone(),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            outcome: event.outcome.as_str().to_owned(),
        }
    }

    /// The first column that differs from the hashed `event`'s field.
    fn first_edit(&self, event: &AuditEvent) -> Option<&'static str> {
        let intact = Self::of(event);
        [
            ("recorded_at", self.at == intact.at),
            ("actor", self.actor == intact.actor),
            ("action", self.action == intact.action),
            ("resource_type", self.resource_type == intact.resource_type),
            ("resource_id", self.resource_id == intact.resource_id),
            ("outcome", self.outcome == intact.outcome),
        ]
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(column, _)| column)
    }
}

/// One stored chain position and the event it covers.
#[derive(Clone, Debug)]
pub struct ChainEntry {
    /// The position.
    pub position: u64,
    /// The event it names.
    pub event_id: Uuid,
    /// The stored leaf hash.
    pub leaf: Hash,
    /// The stored link.
    pub link: Hash,
    /// The event's stored canonical bytes; `None` when the event is gone.
    pub event: Option<Vec<u8>>,
    /// The event row's searchable columns (with `event`).
    pub columns: Option<StoredColumns>,
}

/// What is wrong at a position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The event's content no longer matches its leaf hash.
    #[error("event modified")]
    Modified,
    /// The chain names an event that is not stored.
    #[error("event deleted")]
    Deleted,
    /// The position is not the next one: an entry was removed or added.
    #[error("expected position {expected}, found {found}")]
    Sequence {
        /// The next position.
        expected: u64,
        /// The stored one.
        found: u64,
    },
    /// The link does not follow from the previous one: an entry was
    /// inserted, removed or reordered before this point.
    #[error("chain link broken (event inserted, removed or reordered)")]
    BrokenLink,
    /// The event belongs elsewhere (another organization or id).
    #[error("event does not belong at this position")]
    Misplaced,
    /// A searchable column was changed: it no longer equals its field of
    /// the hashed event (a filter would now hide or misattribute it).
    #[error("column {column} modified")]
    ColumnModified {
        /// The column.
        column: &'static str,
    },
    /// A checkpoint's signature is invalid.
    #[error("checkpoint signature invalid")]
    BadSignature,
    /// The chain's link differs from the signed checkpoint's.
    #[error("chain differs from the signed checkpoint")]
    CheckpointMismatch,
    /// The chain ends before a signed checkpoint: its tail was cut.
    #[error("chain truncated: it ends at {ends_at}, a checkpoint was signed at {signed}")]
    Truncated {
        /// The last position present.
        ends_at: u64,
        /// The checkpoint's position.
        signed: u64,
    },
}

/// The first thing wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("position {position}: {problem}")]
pub struct Finding {
    /// The first bad position.
    pub position: u64,
    /// What is wrong there.
    pub problem: Problem,
}

/// A verified chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Positions checked.
    pub entries: u64,
    /// The last position (0 if none).
    pub head: u64,
    /// Checkpoints matched against the chain.
    pub checkpoints: u64,
}

/// Checks an organization's chain entry by entry, in position order.
#[derive(Debug)]
pub struct ChainVerifier {
    org: OrgId,
    next: u64,
    prev: Hash,
    checkpoints: Vec<Checkpoint>,
    matched: u64,
    entries: u64,
}

impl ChainVerifier {
    /// A verifier of `org`'s chain, starting after `tombstone` (if
    /// retention removed a prefix) and holding it to `checkpoints`. Every
    /// checkpoint's signature is checked against `key` first.
    pub fn new(
        org: OrgId,
        tombstone: Option<&Checkpoint>,
        mut checkpoints: Vec<Checkpoint>,
        key: &VerifyingKey,
    ) -> Result<Self, Finding> {
        let (next, prev) = match tombstone {
            Some(t) => {
                if t.org != org || t.kind != CheckpointKind::Tombstone || !t.is_signed_by(key) {
                    return Err(Finding {
                        position: t.position,
                        problem: Problem::BadSignature,
                    });
                }
                (t.position + 1, t.link)
            }
            None => (1, genesis(org)),
        };
        checkpoints.sort_by_key(|c| c.position);
        if let Some(bad) = checkpoints
            .iter()
            .find(|c| c.org != org || !c.is_signed_by(key))
        {
            return Err(Finding {
                position: bad.position,
                problem: Problem::BadSignature,
            });
        }
        // Checkpoints inside the removed prefix say nothing any more.
        checkpoints.retain(|c| c.position >= next);
        Ok(Self {
            org,
            next,
            prev,
            checkpoints,
            matched: 0,
            entries: 0,
        })
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &ChainEntry) -> Result<(), Finding> {
        let position = self.next;
        let fail = |problem| Err(Finding { position, problem });
        if entry.position != position {
            return fail(Problem::Sequence {
                expected: position,
                found: entry.position,
            });
        }
        let Some(bytes) = &entry.event else {
            return fail(Problem::Deleted);
        };
        if leaf_hash(bytes) != entry.leaf {
            return fail(Problem::Modified);
        }
        let event = match AuditEvent::from_canonical(bytes) {
            Some(e) if e.id == entry.event_id && e.org == self.org => e,
            _ => return fail(Problem::Misplaced),
        };
        match &entry.columns {
            Some(columns) => {
                if let Some(column) = columns.first_edit(&event) {
                    return fail(Problem::ColumnModified { column });
                }
            }
            None => return fail(Problem::Deleted),
        }
        if link_hash(&self.prev, &entry.leaf) != entry.link {
            return fail(Problem::BrokenLink);
        }
        while let Some(cp) = self.checkpoints.first() {
            if cp.position > position {
                break;
            }
            if cp.link != entry.link {
                return fail(Problem::CheckpointMismatch);
            }
            self.checkpoints.remove(0);
            self.matched += 1;
        }
        self.prev = entry.link;
        self.next += 1;
        self.entries += 1;
        Ok(())
    }

    /// Ends the walk: a checkpoint beyond the last entry means the tail was
    /// cut.
    pub fn finish(self) -> Result<Verified, Finding> {
        let head = self.next - 1;
        if let Some(cp) = self.checkpoints.first() {
            return Err(Finding {
                position: self.next,
                problem: Problem::Truncated {
                    ends_at: head,
                    signed: cp.position,
                },
            });
        }
        Ok(Verified {
            entries: self.entries,
            head,
            checkpoints: self.matched,
        })
    }
}
