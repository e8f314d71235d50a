//! De-identified research aggregates: counts of patients by age band, by
//! sex, by medication and by side effect, and appointments per month, under
//! the small-cell rules of [`crate::small_cells`] (no count under 11, no
//! rare label at all, complementary suppression in partitions). Built by
//! [`research_summary`], the one function that decides what research
//! output holds: counts and category labels, never a row per patient,
//! never a date of birth or an identifier.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use carapace_audit::Access;
use time::{Date, OffsetDateTime};

use crate::ClinicalError;
use crate::medication::Timeline;
use crate::patient::Sex;
use crate::small_cells::{normalise_label, open_categories, partition};

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

pub use crate::small_cells::Cell;

/// The research output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResearchSummary {
    /// Patients per age band (every band listed).
    pub age_bands: Vec<Cell>,
    /// Patients per sex (every value listed).
    pub sexes: Vec<Cell>,
    /// Patients per medication (normalised drug name); drugs of fewer than
    /// 11 patients only in the last `other` row.
    pub medications: Vec<Cell>,
    /// Patients per side effect (normalised symptom), rare ones likewise.
    pub side_effects: Vec<Cell>,
    /// Appointments per month (`YYYY-MM`).
    pub appointments_per_month: Vec<Cell>,
}

fn age_on(birth: Date, today: Date) -> u16 {
    let mut years = today.year() - birth.year();
    if (u8::from(today.month()), today.day()) < (u8::from(birth.month()), birth.day()) {
        years -= 1;
    }
    u16::try_from(years.max(0)).unwrap_or(0)
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
    // Open categories: the patients (by index) behind each normalised label.
    let mut medications: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut side_effects: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (patient, t) in cohort.timelines.iter().enumerate() {
        for (d, _) in &t.starts {
            medications
                .entry(normalise_label(d))
                .or_default()
                .insert(patient);
        }
        for (s, _) in &t.onsets {
            side_effects
                .entry(normalise_label(s))
                .or_default()
                .insert(patient);
        }
    }
    let mut months: BTreeMap<String, u32> = BTreeMap::new();
    for a in &cohort.appointment_starts {
        let label = format!("{:04}-{:02}", a.year(), u8::from(a.month()));
        *months.entry(label).or_insert(0) += 1;
    }
    // Partitions keep their order (age bands, sexes, months).
    let age_bands = partition(
        AGE_BANDS
            .iter()
            .map(|(l, _, _)| ((*l).to_owned(), bands.get(*l).copied().unwrap_or(0)))
            .collect(),
    );
    let sexes = partition(
        Sex::ALL
            .iter()
            .map(|x| {
                let n = cohort.sexes.iter().filter(|s| *s == x).count();
                (x.as_str().to_owned(), u32::try_from(n).unwrap_or(u32::MAX))
            })
            .collect(),
    );
    ResearchSummary {
        age_bands,
        sexes,
        medications: open_categories(medications),
        side_effects: open_categories(side_effects),
        appointments_per_month: partition(months.into_iter().collect()),
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
    use crate::small_cells::SMALL_CELL;
    use time::macros::{date, datetime};

    const TODAY: Date = date!(2026 - 12 - 01);

    fn counts(cells: &[Cell]) -> Vec<(String, Option<u32>)> {
        cells.iter().map(|c| (c.label.clone(), c.count)).collect()
    }

    fn on(drug: &str, symptom: &str) -> Timeline {
        Timeline {
            starts: vec![(drug.into(), TODAY), (drug.into(), TODAY)],
            onsets: vec![(symptom.into(), TODAY)],
        }
    }

    #[test]
    fn a_label_under_the_threshold_is_not_published_at_all() {
        for (rare, expected_other) in [(10_usize, None), (11, Some(11))] {
            let mut cohort = Cohort::default();
            // Eleven on lisinopril, spelt three ways; `rare` patients each
            // on a drug of their own.
            for n in 0..11 {
                let spelling = ["Lisinopril", " lisinopril", "LISINOPRIL."][n % 3];
                cohort.timelines.push(on(spelling, "Dry  cough"));
            }
            for n in 0..rare {
                cohort
                    .timelines
                    .push(on(&format!("rarezumab-{n}"), "hiccups"));
            }
            let s = research_summary(&cohort, TODAY);
            assert_eq!(
                counts(&s.medications),
                vec![
                    ("lisinopril".into(), Some(11)),
                    ("other".into(), expected_other)
                ],
                "{rare} rare"
            );
            let hiccups = (rare >= 11).then_some(11);
            let side_effects = if rare >= 11 {
                vec![("dry cough".into(), Some(11)), ("hiccups".into(), hiccups)]
            } else {
                vec![("dry cough".into(), Some(11)), ("other".into(), None)]
            };
            assert_eq!(counts(&s.side_effects), side_effects, "{rare} rare");
            let printed = format!("{s:?}");
            assert!(!printed.contains("rarezumab"), "{printed}");
            if rare < 11 {
                assert!(!printed.contains("hiccups"), "{printed}");
            }
        }
    }

    /// What a reader can do with the output: every partition is of one
    /// population (age bands and sexes of the same patients), so a total
    /// shown in one is the total of the other; the withheld cells of a
    /// partition hold that total minus what it shows.
    fn withheld_together(cells: &[Cell], total: u32) -> u32 {
        total - cells.iter().filter_map(|c| c.count).sum::<u32>()
    }

    #[test]
    fn no_withheld_cell_can_be_derived_from_another_partition() {
        // Children from one to twelve beside thirty adults of 40 and twelve
        // of 20; the sexes split the same patients differently.
        for children in 1..=12_u32 {
            let mut cohort = Cohort::default();
            cohort.birth_dates.extend(vec![date!(1986 - 06 - 01); 30]);
            cohort.birth_dates.extend(vec![date!(2000 - 06 - 01); 12]);
            for _ in 0..children {
                cohort.birth_dates.push(date!(2015 - 01 - 01));
            }
            let total = 42 + children;
            cohort.sexes.extend(vec![Sex::Female; 30]);
            cohort
                .sexes
                .extend(vec![Sex::Male; usize::try_from(total - 30).unwrap_or(0)]);
            let s = research_summary(&cohort, TODAY);
            // The sexes are published whole (both 11 or more): the total is known.
            let known: u32 = s.sexes.iter().filter_map(|c| c.count).sum();
            assert_eq!(known, total);
            // So the age bands' withheld cells, together, are known too:
            // never a number under eleven but nothing.
            let hidden = withheld_together(&s.age_bands, known);
            assert!(
                hidden == 0 || hidden >= SMALL_CELL,
                "{children} children: {hidden} derivable from {:?}",
                counts(&s.age_bands)
            );
            let expected_children = (children >= SMALL_CELL).then_some(children);
            assert_eq!(s.age_bands[0].count, expected_children);
            if children < SMALL_CELL {
                // The twelve of 20 are withheld beside the children.
                assert_eq!(s.age_bands[1].count, None, "{children}");
                assert_eq!(s.age_bands[2].count, Some(30));
            } else {
                assert_eq!(s.age_bands[1].count, Some(12));
            }
        }
    }

    #[test]
    fn nothing_identifies_and_one_over_the_threshold_is_shown() {
        let mut cohort = Cohort::default();
        // Eleven of 40 and one who turns 18 tomorrow (a child today).
        cohort.birth_dates.extend(vec![date!(1986 - 06 - 01); 11]);
        cohort.birth_dates.push(date!(2008 - 12 - 02));
        cohort.sexes.extend(vec![Sex::Female; 12]);
        cohort
            .appointment_starts
            .extend(vec![datetime!(2026-11-03 09:00 UTC); 11]);
        cohort
            .appointment_starts
            .push(datetime!(2026-10-03 09:00 UTC));
        let s = research_summary(&cohort, TODAY);
        // One child and eleven adults: the adults go too, or the child is
        // the difference from the sexes' twelve.
        assert!(s.age_bands.iter().all(|c| c.count.is_none()), "{s:?}");
        assert_eq!(counts(&s.sexes)[0], ("female".into(), Some(12)));
        assert!(
            s.appointments_per_month.iter().all(|c| c.count.is_none()),
            "one October visit and eleven in November: both withheld"
        );
        let printed = format!("{s:?}");
        assert!(!printed.contains("1986") && !printed.contains("2008"));
    }
}
