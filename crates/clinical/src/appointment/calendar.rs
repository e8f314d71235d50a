//! Calendar feeds: what one appointment shows in a practitioner's feed
//! ([`feed_event`], the one function that decides it) and the feed port.

use std::future::Future;

use carapace_audit::Access;
use carapace_tenancy::{CalendarDetail, SubjectId, TenantContext};
use time::OffsetDateTime;

carapace_tenancy::entity_id! {
    /// A calendar feed's id.
    pub struct FeedId;
}

use super::{Appointment, Slot};
use crate::ClinicalError;

/// One event of a feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEvent {
    /// Stable across refreshes: the appointment id at a fixed domain.
    pub uid: String,
    /// When.
    pub slot: Slot,
    /// "Appointment", or with [`CalendarDetail::Initials`]
    /// "Appointment (J. R.)".
    pub summary: String,
}

/// The feed event of `a`: its id, its times and a summary with no more
/// than `detail` allows. No reason, no patient id, no names beyond
/// initials, no zone, no status.
pub fn feed_event(a: &Appointment, detail: CalendarDetail, initials: Option<&str>) -> FeedEvent {
    let summary = match (detail, initials) {
        (CalendarDetail::Initials, Some(i)) if !i.is_empty() => format!("Appointment ({i})"),
        _ => "Appointment".to_owned(),
    };
    FeedEvent {
        uid: format!("{}@carapace", a.id),
        slot: a.slot,
        summary,
    }
}

/// Initials of a name: `J. R.` for Jane Roe.
pub fn initials(given: &str, family: &str) -> String {
    [given, family]
        .iter()
        .filter_map(|n| n.trim().chars().next())
        .map(|c| format!("{}.", c.to_uppercase()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A feed as listed (no token: that is shown once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedInfo {
    /// Its id.
    pub id: FeedId,
    /// Whose schedule.
    pub practitioner: SubjectId,
    /// Made.
    pub created_at: OffsetDateTime,
    /// Revoked, if it is.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Storage of feed tokens (their hashes) and the feed's read.
pub trait CalendarFeedRepository: Send + Sync {
    /// Stores a feed of `practitioner`'s schedule under `token_hash`
    /// (`calendar_feed.create`).
    fn create(
        &self,
        access: &Access,
        practitioner: &SubjectId,
        token_hash: [u8; 32],
    ) -> impl Future<Output = Result<FeedInfo, ClinicalError>> + Send;

    /// The practitioner's feeds (`calendar_feed.list`).
    fn list(
        &self,
        access: &Access,
        practitioner: &SubjectId,
    ) -> impl Future<Output = Result<Vec<FeedInfo>, ClinicalError>> + Send;

    /// Revokes one of the practitioner's feeds (`calendar_feed.revoke`);
    /// `false` if they have no such feed.
    fn revoke(
        &self,
        access: &Access,
        practitioner: &SubjectId,
        id: FeedId,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// The unrevoked feed with this token hash.
    fn resolve(
        &self,
        ctx: &TenantContext,
        token_hash: [u8; 32],
    ) -> impl Future<Output = Result<Option<FeedInfo>, ClinicalError>> + Send;

    /// The feed's booked appointments starting in `window`, with the
    /// patient's initials when `detail` shows them (`calendar_feed.read`,
    /// one event per appointment shown).
    fn events(
        &self,
        access: &Access,
        feed: &FeedInfo,
        window: Slot,
        detail: CalendarDetail,
    ) -> impl Future<Output = Result<Vec<FeedEvent>, ClinicalError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appointment::{AppointmentId, AppointmentStatus, TimeZoneName};
    use crate::patient::PatientId;
    use carapace_phi_crypto::Phi;
    use carapace_tenancy::OrgId;
    use time::macros::datetime;

    fn appointment() -> Appointment {
        let start = datetime!(2026-12-01 09:00 UTC);
        Appointment {
            id: AppointmentId::generate(),
            org: OrgId::generate(),
            patient: PatientId::generate(),
            practitioner: SubjectId::parse("dr").unwrap_or_else(|_| unreachable!()),
            slot: Slot::new(start, start + time::Duration::minutes(30))
                .unwrap_or_else(|| unreachable!()),
            time_zone: TimeZoneName::parse("UTC").unwrap_or_else(|_| unreachable!()),
            status: AppointmentStatus::Booked,
            reason: Some(Phi::new("chest pain".into())),
            created_at: start,
            updated_at: start,
        }
    }

    #[test]
    fn a_feed_event_holds_times_and_the_allowed_summary_only() {
        let a = appointment();
        let minimal = feed_event(&a, CalendarDetail::Minimal, Some("J. R."));
        assert_eq!(
            minimal,
            FeedEvent {
                uid: format!("{}@carapace", a.id),
                slot: a.slot,
                summary: "Appointment".into(),
            }
        );
        let named = feed_event(&a, CalendarDetail::Initials, Some("J. R."));
        assert_eq!(named.summary, "Appointment (J. R.)");
        assert!(!format!("{named:?}").contains("chest"));
        assert!(!format!("{named:?}").contains(&a.patient.to_string()));
    }

    #[test]
    fn initials_are_letters_and_dots() {
        assert_eq!(initials("jane", "Roe"), "J. R.");
        assert_eq!(initials(" Émile", ""), "É.");
    }
}
