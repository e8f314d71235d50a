//! De-identified research aggregates: counts of patients by age band, by
//! sex, by medication and by side effect, and appointments per month, each count
//! withheld under [`crate::medication::limits::SMALL_CELL`]. Built by
//! [`research_summary`], the one function that decides what research
//! output holds: counts and category labels, never a row per patient,
//! never a date of birth or an identifier.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use carapace_audit::Access;
use time::{Date, OffsetDateTime};

use crate::ClinicalError;
use crate::medication::{Timeline, suppress};
use crate::patient::Sex;

/// Age bands, in years.
pub const AGE_BANDS: [(&str, u16, u16); 5] = [
    ("0-17", 0, 17),
    ("18-34", 18, 34),
    ("35-49", 35, 49),
    ("50-64", 50, 64),
    ("65+", 65, u16::MAX),
];

/// What the aggregates are computed from (read for aggregation only).
#[derive(Clone, Debug, Default)]
pub struct Cohort {
    /// Each patient's date of birth.
    pub birth_dates: Vec<Date>,
    /// Each patient's sex (`Unknown` when not recorded).
    pub sexes: Vec<Sex>,
    /// Each patient's medication and symptom timeline (with medications
    /// or side effects).
    pub timelines: Vec<Timeline>,
    /// The start of each appointment in the last year.
    pub appointment_starts: Vec<OffsetDateTime>,
}

/// A labelled count; `None` when withheld (fewer than 11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The category.
    pub label: String,
    /// The count, or `None` when it is a small cell.
    pub count: Option<u32>,
}

/// The research output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResearchSummary {
    /// Patients per age band (every band listed).
    pub age_bands: Vec<Cell>,
    /// Patients per sex (every value listed).
    pub sexes: Vec<Cell>,
    /// Patients per medication (normalised drug name).
    pub medications: Vec<Cell>,
    /// Patients per side effect (normalised symptom).
    pub side_effects: Vec<Cell>,
    /// Appointments per month (`YYYY-MM`).
    pub appointments_per_month: Vec<Cell>,
}

fn age_on(birth: Date, today: Date) -> u16 {
    let mut years = today.year() - birth.year();
    if (today.month() as u8, today.day()) < (birth.month() as u8, birth.day()) {
        years -= 1;
    }
    u16::try_from(years.max(0)).unwrap_or(0)
}

fn cells(counts: BTreeMap<String, u32>) -> Vec<Cell> {
    counts
        .into_iter()
        .map(|(label, n)| Cell {
            label,
            count: suppress(n),
        })
        .collect()
}

/// The aggregates of `cohort` on `today`.
pub fn research_summary(cohort: &Cohort, today: Date) -> ResearchSummary {
    let mut bands: BTreeMap<String, u32> = AGE_BANDS
        .iter()
        .map(|(l, _, _)| ((*l).to_owned(), 0))
        .collect();
    for b in &cohort.birth_dates {
        let age = age_on(*b, today);
        if let Some((label, _, _)) = AGE_BANDS
            .iter()
            .find(|(_, lo, hi)| (*lo..=*hi).contains(&age))
        {
            *bands.entry((*label).to_owned()).or_insert(0) += 1;
        }
    }
    let mut medications: BTreeMap<String, u32> = BTreeMap::new();
    let mut side_effects: BTreeMap<String, u32> = BTreeMap::new();
    for t in &cohort.timelines {
        let drugs: BTreeSet<&String> = t.starts.iter().map(|(d, _)| d).collect();
        for d in drugs {
            *medications.entry(d.clone()).or_insert(0) += 1;
        }
        let symptoms: BTreeSet<&String> = t.onsets.iter().map(|(s, _)| s).collect();
        for s in symptoms {
            *side_effects.entry(s.clone()).or_insert(0) += 1;
        }
    }
    let mut months: BTreeMap<String, u32> = BTreeMap::new();
    for a in &cohort.appointment_starts {
        let label = format!("{:04}-{:02}", a.year(), u8::from(a.month()));
        *months.entry(label).or_insert(0) += 1;
    }
    // Age bands keep their order.
    let age_bands = AGE_BANDS
        .iter()
        .map(|(l, _, _)| Cell {
            label: (*l).to_owned(),
            count: suppress(bands.get(*l).copied().unwrap_or(0)),
        })
        .collect();
    let sexes = Sex::ALL
        .iter()
        .map(|x| Cell {
            label: x.as_str().to_owned(),
            count: suppress(
                u32::try_from(cohort.sexes.iter().filter(|s| *s == x).count()).unwrap_or(u32::MAX),
            ),
        })
        .collect();
    ResearchSummary {
        age_bands,
        sexes,
        medications: cells(medications),
        side_effects: cells(side_effects),
        appointments_per_month: cells(months),
    }
}

/// Reads what aggregates are computed from (`research.aggregate`, one
/// event naming how many patients).
pub trait ResearchRepository: Send + Sync {
    /// The organization's cohort, appointments since `since`.
    fn cohort(
        &self,
        access: &Access,
        since: OffsetDateTime,
    ) -> impl Future<Output = Result<Cohort, ClinicalError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn every_count_under_eleven_is_withheld_and_nothing_identifies() {
        let today = date!(2026 - 12 - 01);
        let mut cohort = Cohort::default();
        // 12 adults of 40, 3 children, one who turns 18 tomorrow.
        cohort.birth_dates.extend(vec![date!(1986 - 06 - 01); 12]);
        cohort.birth_dates.extend(vec![date!(2015 - 01 - 01); 3]);
        cohort.birth_dates.push(date!(2008 - 12 - 02));
        cohort.sexes.extend(vec![Sex::Female; 11]);
        cohort.sexes.extend(vec![Sex::Male; 5]);
        let lisinopril = Timeline {
            starts: vec![("lisinopril".into(), today), ("lisinopril".into(), today)],
            onsets: vec![("cough".into(), today)],
        };
        cohort.timelines.extend(vec![lisinopril; 11]);
        cohort
            .appointment_starts
            .extend(vec![datetime!(2026-11-03 09:00 UTC); 11]);
        cohort
            .appointment_starts
            .push(datetime!(2026-10-03 09:00 UTC));
        let s = research_summary(&cohort, today);
        let counts = |cells: &[Cell]| -> Vec<(String, Option<u32>)> {
            cells.iter().map(|c| (c.label.clone(), c.count)).collect()
        };
        assert_eq!(
            counts(&s.age_bands),
            vec![
                ("0-17".into(), None),
                ("18-34".into(), None),
                ("35-49".into(), Some(12)),
                ("50-64".into(), None),
                ("65+".into(), None),
            ]
        );
        assert_eq!(
            counts(&s.sexes),
            vec![
                ("female".into(), Some(11)),
                ("male".into(), None),
                ("other".into(), None),
                ("unknown".into(), None),
            ]
        );
        assert_eq!(
            counts(&s.medications),
            vec![("lisinopril".into(), Some(11))]
        );
        assert_eq!(counts(&s.side_effects), vec![("cough".into(), Some(11))]);
        assert_eq!(
            counts(&s.appointments_per_month),
            vec![("2026-10".into(), None), ("2026-11".into(), Some(11))]
        );
        let printed = format!("{s:?}");
        assert!(!printed.contains("1986") && !printed.contains("2008"));
    }
}
