//! What a published aggregate may show (HIPAA minimum necessary, §164.502(b),
//! and the usual small-cell rules of de-identified statistics):
//!
//! - a count under [`SMALL_CELL`] is never shown;
//! - in open categories (free-text labels: a drug, a symptom), a label with
//!   fewer than [`SMALL_CELL`] patients is not shown either: a rare label
//!   identifies as well as its count would. Such labels are folded into one
//!   [`OTHER`] row of the distinct patients behind them, itself withheld
//!   when small. A label that is itself `other` goes into that row too,
//!   whatever its count: two rows of one label, one of them a real label
//!   and one the rare ones, could not be told apart;
//! - in a partition (every patient in exactly one cell: age bands, sexes,
//!   months), whose total a reader may know from elsewhere, the withheld
//!   cells together must hold nobody or at least [`SMALL_CELL`]: otherwise
//!   the smallest shown cells are withheld too (complementary
//!   suppression), so no withheld cell can be worked out by subtraction;
//! - labels are normalised before counting, so spellings of one drug are
//!   one row.

use std::collections::{BTreeMap, BTreeSet};

/// The smallest count shown.
pub const SMALL_CELL: u32 = 11;
/// The label of the row that holds the rare labels of an open category.
pub const OTHER: &str = "other";

/// A labelled count; `None` when withheld.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The category.
    pub label: String,
    /// The count, or `None` when withheld.
    pub count: Option<u32>,
}

/// A free-text label as it is counted: lower-case, trimmed, inner spaces
/// collapsed, trailing punctuation dropped.
pub fn normalise_label(raw: &str) -> String {
    raw.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(['.', ',', ';', ':'])
        .to_lowercase()
}

/// An open category: each label with the patients (any stable key) behind
/// it. Labels of at least [`SMALL_CELL`] patients are shown with their
/// counts; the others, and a label that is itself [`OTHER`], are folded
/// into [`OTHER`] (the distinct patients behind them, withheld when
/// small), listed last when any exist: no two rows share a label.
pub fn open_categories<K: Ord>(per_label: BTreeMap<String, BTreeSet<K>>) -> Vec<Cell> {
    let mut shown = Vec::new();
    let mut rare: BTreeSet<&K> = BTreeSet::new();
    let mut any_rare = false;
    for (label, who) in &per_label {
        let n = u32::try_from(who.len()).unwrap_or(u32::MAX);
        if n >= SMALL_CELL && label != OTHER {
            shown.push(Cell {
                label: label.clone(),
                count: Some(n),
            });
        } else if n > 0 {
            any_rare = true;
            rare.extend(who.iter());
        }
    }
    if any_rare {
        let n = u32::try_from(rare.len()).unwrap_or(u32::MAX);
        shown.push(Cell {
            label: OTHER.to_owned(),
            count: (n >= SMALL_CELL).then_some(n),
        });
    }
    shown
}

/// A partition, in its order: small cells withheld, then the smallest
/// shown ones too until the withheld cells hold nobody or at least
/// [`SMALL_CELL`] together.
pub fn partition(cells: Vec<(String, u32)>) -> Vec<Cell> {
    let mut withheld: Vec<bool> = cells.iter().map(|(_, n)| *n < SMALL_CELL).collect();
    loop {
        let hidden: u32 = cells
            .iter()
            .zip(&withheld)
            .filter(|(_, w)| **w)
            .map(|((_, n), _)| *n)
            .sum();
        if hidden == 0 || hidden >= SMALL_CELL {
            break;
        }
        let next = cells
            .iter()
            .enumerate()
            .filter(|(i, _)| !withheld[*i])
            .min_by_key(|(_, (_, n))| *n)
            .map(|(i, _)| i);
        match next {
            Some(i) => withheld[i] = true,
            None => break,
        }
    }
    cells
        .into_iter()
        .zip(withheld)
        .map(|((label, n), w)| Cell {
            label,
            count: (!w).then_some(n),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people(range: std::ops::Range<u32>) -> BTreeSet<u32> {
        range.collect()
    }

    #[test]
    fn rare_labels_are_not_published_at_all() {
        let mut per = BTreeMap::new();
        per.insert("amoxicillin".to_owned(), people(0..10)); // just under
        per.insert("lisinopril".to_owned(), people(10..21)); // just over
        per.insert("rarezumab".to_owned(), people(21..22));
        let cells = open_categories(per);
        let labels: Vec<&str> = cells.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, vec!["lisinopril", OTHER]);
        assert_eq!(cells[0].count, Some(11));
        assert_eq!(cells[1].count, Some(11), "ten and one distinct patients");
        let mut per = BTreeMap::new();
        per.insert("rarezumab".to_owned(), people(0..3));
        per.insert("oddamycin".to_owned(), people(1..4));
        let cells = open_categories(per);
        assert_eq!(
            cells,
            vec![Cell {
                label: OTHER.into(),
                count: None
            }]
        );
    }

    #[test]
    fn a_label_called_other_is_not_a_second_other_row() {
        let mut per = BTreeMap::new();
        per.insert(OTHER.to_owned(), people(0..15)); // a real label, shown-sized
        per.insert("rarezumab".to_owned(), people(15..18));
        per.insert("lisinopril".to_owned(), people(18..30));
        let cells = open_categories(per);
        assert_eq!(
            cells,
            vec![
                Cell {
                    label: "lisinopril".into(),
                    count: Some(12)
                },
                Cell {
                    label: OTHER.into(),
                    count: Some(18)
                },
            ]
        );
        // Alone and small, it is withheld like any rare label.
        let mut per = BTreeMap::new();
        per.insert(normalise_label(" Other. "), people(0..4));
        assert_eq!(
            open_categories(per),
            vec![Cell {
                label: OTHER.into(),
                count: None
            }]
        );
    }

    /// What a reader can work out: with the total known (say, from another
    /// partition shown whole), a lone withheld cell is the difference.
    fn derivable(cells: &[Cell], total: u32) -> Vec<(String, u32)> {
        let withheld: Vec<&Cell> = cells.iter().filter(|c| c.count.is_none()).collect();
        let shown: u32 = cells.iter().filter_map(|c| c.count).sum();
        match withheld.as_slice() {
            [one] => vec![(one.label.clone(), total - shown)],
            _ => Vec::new(),
        }
    }

    #[test]
    fn no_withheld_cell_can_be_worked_out_from_the_total() {
        for small in 1..SMALL_CELL {
            let counts = vec![
                ("female".to_owned(), 40),
                ("male".to_owned(), 25),
                ("other".to_owned(), small),
                ("unknown".to_owned(), 0),
            ];
            let total: u32 = counts.iter().map(|(_, n)| n).sum();
            let cells = partition(counts);
            for (label, n) in derivable(&cells, total) {
                assert!(
                    n == 0 || n >= SMALL_CELL,
                    "{label} = {n} derived (small {small})"
                );
            }
            let hidden: u32 = cells
                .iter()
                .filter(|c| c.count.is_none())
                .map(|c| match c.label.as_str() {
                    "female" => 40,
                    "male" => 25,
                    "other" => small,
                    _ => 0,
                })
                .sum();
            assert!(
                hidden == 0 || hidden >= SMALL_CELL,
                "withheld together: {hidden}"
            );
            assert_eq!(cells[1].count, None, "the smallest shown cell goes too");
            assert_eq!(cells[0].count, Some(40));
        }
        // Nothing small: everything shown, zero cells as themselves.
        let cells = partition(vec![("a".into(), 12), ("b".into(), 0)]);
        assert_eq!(cells[0].count, Some(12));
    }

    #[test]
    fn spellings_of_one_label_count_as_one() {
        for raw in [
            "Amoxicillin",
            " amoxicillin ",
            "AMOXICILLIN.",
            "amoxicillin,",
        ] {
            assert_eq!(normalise_label(raw), "amoxicillin");
        }
        assert_eq!(normalise_label("Vitamin   D3"), "vitamin d3");
    }
}
