//! Medication statements and side-effect reports per patient (every field
//! PHI, encrypted at rest), and the correlation of symptoms with
//! medication starts: per patient, and across an organization with
//! small-cell suppression.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use carapace_audit::Access;
use carapace_phi_crypto::Phi;
use time::{Date, Duration, OffsetDateTime, macros::format_description};

carapace_tenancy::entity_id! {
    /// A medication statement's id.
    pub struct MedicationId;
}

carapace_tenancy::entity_id! {
    /// A side-effect report's id.
    pub struct SideEffectId;
}

use crate::patient::PatientId;

mod records;

use crate::input::phi_text as text;
use crate::{ClinicalError, FieldError};
pub use records::MedicationRecords;

/// Field limits, in characters.
pub mod limits {
    /// Longest drug name.
    pub const DRUG_MAX: usize = 200;
    /// Longest dose (`500 mg`).
    pub const DOSE_MAX: usize = 100;
    /// Longest schedule (`twice daily with food`).
    pub const SCHEDULE_MAX: usize = 200;
    /// Longest symptom.
    pub const SYMPTOM_MAX: usize = 200;
    /// Longest correlation window, in days.
    pub const WINDOW_MAX_DAYS: u16 = 365;
    /// Organization aggregates are withheld below this count.
    pub const SMALL_CELL: u32 = 11;
}

/// How bad a side effect is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Noticeable.
    Mild,
    /// Interferes with daily life.
    Moderate,
    /// Dangerous or disabling.
    Severe,
}

impl Severity {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mild => "mild",
            Self::Moderate => "moderate",
            Self::Severe => "severe",
        }
    }

    /// The severity named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Mild, Self::Moderate, Self::Severe]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A medication statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Medication {
    /// Its id.
    pub id: MedicationId,
    /// Whose.
    pub patient: PatientId,
    /// What.
    pub details: MedicationDetails,
    /// Recorded.
    pub created_at: OffsetDateTime,
}

/// What a medication statement says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MedicationDetails {
    /// Drug name.
    pub drug_name: Phi<String>,
    /// Dose.
    pub dose: Phi<String>,
    /// Schedule.
    pub schedule: Phi<String>,
    /// First day taken.
    pub started_on: Phi<Date>,
    /// Last day taken, if stopped.
    pub stopped_on: Option<Phi<Date>>,
}

/// A side-effect report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideEffect {
    /// Its id.
    pub id: SideEffectId,
    /// Whose.
    pub patient: PatientId,
    /// What.
    pub details: SideEffectDetails,
    /// Recorded.
    pub created_at: OffsetDateTime,
}

/// What a side-effect report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideEffectDetails {
    /// The symptom.
    pub symptom: Phi<String>,
    /// How bad.
    pub severity: Phi<Severity>,
    /// First day noticed.
    pub onset_on: Phi<Date>,
}

/// A medication statement as a client sends it.
#[derive(Clone, Debug, Default)]
pub struct MedicationInput {
    /// 1-200 characters.
    pub drug_name: String,
    /// 1-100 characters.
    pub dose: String,
    /// 1-200 characters.
    pub schedule: String,
    /// `YYYY-MM-DD`.
    pub started_on: String,
    /// `YYYY-MM-DD`, not before `started_on`.
    pub stopped_on: Option<String>,
}

/// A side-effect report as a client sends it.
#[derive(Clone, Debug, Default)]
pub struct SideEffectInput {
    /// 1-200 characters.
    pub symptom: String,
    /// `mild`, `moderate` or `severe`.
    pub severity: String,
    /// `YYYY-MM-DD`, not in the future.
    pub onset_on: String,
}

fn date(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<Date> {
    match Date::parse(raw, format_description!("[year]-[month]-[day]")) {
        Ok(d) if d.year() >= 1900 => Some(d),
        _ => {
            errors.push(FieldError::new(field, "must be a date YYYY-MM-DD"));
            None
        }
    }
}

impl MedicationInput {
    /// Validates every field, reporting every problem at once; `today`
    /// bounds the start (at most a year ahead: planned courses).
    pub fn parse(self, today: Date) -> Result<MedicationDetails, ClinicalError> {
        let mut errors = Vec::new();
        let drug_name = text("drug_name", &self.drug_name, limits::DRUG_MAX, &mut errors);
        let dose = text("dose", &self.dose, limits::DOSE_MAX, &mut errors);
        let schedule = text(
            "schedule",
            &self.schedule,
            limits::SCHEDULE_MAX,
            &mut errors,
        );
        let started_on = date("started_on", &self.started_on, &mut errors);
        if started_on.is_some_and(|d| d > today + Duration::days(366)) {
            errors.push(FieldError::new("started_on", "may be at most a year ahead"));
        }
        let stopped_on = self
            .stopped_on
            .as_deref()
            .and_then(|s| date("stopped_on", s, &mut errors));
        if let (Some(start), Some(stop)) = (started_on, stopped_on)
            && stop < start
        {
            errors.push(FieldError::new(
                "stopped_on",
                "must not be before started_on",
            ));
        }
        match (drug_name, dose, schedule, started_on) {
            (Some(drug_name), Some(dose), Some(schedule), Some(started_on))
                if errors.is_empty() =>
            {
                Ok(MedicationDetails {
                    drug_name,
                    dose,
                    schedule,
                    started_on: Phi::new(started_on),
                    stopped_on: stopped_on.map(Phi::new),
                })
            }
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

impl SideEffectInput {
    /// Validates every field; onsets after `today` are refused.
    pub fn parse(self, today: Date) -> Result<SideEffectDetails, ClinicalError> {
        let mut errors = Vec::new();
        let symptom = text("symptom", &self.symptom, limits::SYMPTOM_MAX, &mut errors);
        let severity = Severity::parse(&self.severity);
        if severity.is_none() {
            errors.push(FieldError::new(
                "severity",
                "must be mild, moderate or severe",
            ));
        }
        let onset_on = date("onset_on", &self.onset_on, &mut errors);
        if onset_on.is_some_and(|d| d > today) {
            errors.push(FieldError::new("onset_on", "must not be in the future"));
        }
        match (symptom, severity, onset_on) {
            (Some(symptom), Some(severity), Some(onset_on)) if errors.is_empty() => {
                Ok(SideEffectDetails {
                    symptom,
                    severity: Phi::new(severity),
                    onset_on: Phi::new(onset_on),
                })
            }
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

/// A correlation window: 1-365 days after a medication start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window(u16);

impl Window {
    /// Days when none is asked for.
    pub const DEFAULT_DAYS: u16 = 14;

    /// Parses a requested window in days.
    pub fn parse(days: Option<u32>) -> Result<Self, ClinicalError> {
        match days {
            None => Ok(Self(Self::DEFAULT_DAYS)),
            Some(d) if (1..=u32::from(limits::WINDOW_MAX_DAYS)).contains(&d) => {
                Ok(Self(u16::try_from(d).unwrap_or(limits::WINDOW_MAX_DAYS)))
            }
            Some(_) => Err(ClinicalError::Invalid(vec![FieldError::new(
                "window_days",
                format!("must be between 1 and {}", limits::WINDOW_MAX_DAYS),
            )])),
        }
    }

    /// The days.
    pub fn days(self) -> u16 {
        self.0
    }
}

/// A drug or symptom as correlations compare it: the one normalisation of
/// [`crate::small_cells::normalise_label`].
pub fn normalise(s: &str) -> String {
    crate::small_cells::normalise_label(s)
}

/// One patient's medication and symptom timeline (the correlation input).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// (drug, start) of each statement.
    pub starts: Vec<(String, Date)>,
    /// (symptom, onset) of each report.
    pub onsets: Vec<(String, Date)>,
}

impl Timeline {
    /// The timeline of these records (names normalised).
    pub fn of(medications: &[Medication], effects: &[SideEffect]) -> Self {
        Self {
            starts: medications
                .iter()
                .map(|m| {
                    (
                        normalise(m.details.drug_name.expose_phi()),
                        *m.details.started_on.expose_phi(),
                    )
                })
                .collect(),
            onsets: effects
                .iter()
                .map(|e| {
                    (
                        normalise(e.details.symptom.expose_phi()),
                        *e.details.onset_on.expose_phi(),
                    )
                })
                .collect(),
        }
    }

    /// The (drug, symptom) pairs where the symptom began within `window`
    /// days on or after the drug's start, each with how many reports.
    pub fn pairs(&self, window: Window) -> BTreeMap<(String, String), u32> {
        let mut out = BTreeMap::new();
        for (drug, start) in &self.starts {
            let end = *start + Duration::days(i64::from(window.days()));
            for (symptom, onset) in &self.onsets {
                if onset >= start && *onset <= end {
                    *out.entry((drug.clone(), symptom.clone())).or_insert(0) += 1;
                }
            }
        }
        out
    }
}

/// A drug-symptom pair and its count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Correlation {
    /// The drug (normalised).
    pub drug: String,
    /// The symptom (normalised).
    pub symptom: String,
    /// Reports (per patient) or patients (per organization); `None` when
    /// withheld because it is under [`limits::SMALL_CELL`].
    pub count: Option<u32>,
}

/// The correlations of one patient: every pair with its report count.
pub fn patient_correlations(timeline: &Timeline, window: Window) -> Vec<Correlation> {
    timeline
        .pairs(window)
        .into_iter()
        .map(|((drug, symptom), n)| Correlation {
            drug,
            symptom,
            count: Some(n),
        })
        .collect()
}

/// The correlations across an organization: for each pair, how many
/// patients have it. A pair of fewer than [`limits::SMALL_CELL`] patients
/// is not named at all: such pairs are folded into one last
/// `other`/`other` row of the distinct patients behind them, itself
/// withheld (`None`) when small (the rules of [`crate::small_cells`]).
/// Never per-patient rows.
pub fn organization_correlations(timelines: &[Timeline], window: Window) -> Vec<Correlation> {
    // The patients (by index) behind each pair, keyed so the pair comes back.
    // The pair `other`/`other` is the rare pairs' row's name: its patients
    // go into that row, so that no two rows read `other`/`other`.
    let mut patients: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let other = crate::small_cells::OTHER;
    for (patient, t) in timelines.iter().enumerate() {
        for (drug, symptom) in t.pairs(window).into_keys() {
            let key = if drug == other && symptom == other {
                other.to_owned()
            } else {
                pair_key(&drug, &symptom)
            };
            patients.entry(key).or_default().insert(patient);
        }
    }
    crate::small_cells::open_categories(patients)
        .into_iter()
        .map(|cell| {
            let (drug, symptom) = cell
                .label
                .split_once(PAIR_SEPARATOR)
                .map_or((other, other), |p| p);
            Correlation {
                drug: drug.to_owned(),
                symptom: symptom.to_owned(),
                count: cell.count,
            }
        })
        .collect()
}

/// Separates drug and symptom in a pair's key (no normalised label holds it).
const PAIR_SEPARATOR: char = '\u{1f}';

fn pair_key(drug: &str, symptom: &str) -> String {
    format!("{drug}{PAIR_SEPARATOR}{symptom}")
}

/// `n`, or `None` when it is a small cell (under 11).
pub fn suppress(n: u32) -> Option<u32> {
    (n >= limits::SMALL_CELL).then_some(n)
}

/// Names of the PHI fields, as audit events list them.
pub const MEDICATION_FIELDS: [&str; 5] =
    ["drug_name", "dose", "schedule", "started_on", "stopped_on"];
/// Names of the PHI fields of a side-effect report.
pub const SIDE_EFFECT_FIELDS: [&str; 3] = ["symptom", "severity", "onset_on"];

/// A patient's statements and reports, oldest first.
pub type MedicationHistory = (Vec<Medication>, Vec<SideEffect>);

/// Storage of medication statements and side-effect reports, confined to
/// the caller's organization; every call audited in its transaction.
/// `None`: no such patient.
pub trait MedicationRepository: Send + Sync {
    /// Records a statement (`medication.create`).
    fn add_medication(
        &self,
        access: &Access,
        patient: PatientId,
        details: &MedicationDetails,
    ) -> impl Future<Output = Result<Option<Medication>, ClinicalError>> + Send;

    /// Records a report (`side_effect.create`).
    fn add_side_effect(
        &self,
        access: &Access,
        patient: PatientId,
        details: &SideEffectDetails,
    ) -> impl Future<Output = Result<Option<SideEffect>, ClinicalError>> + Send;

    /// The patient's statements and reports, oldest first
    /// (`medication.read`), at most 1000 of each.
    fn history(
        &self,
        access: &Access,
        patient: PatientId,
    ) -> impl Future<Output = Result<Option<MedicationHistory>, ClinicalError>> + Send;

    /// The patient record `entry` is about (no PHI read, nothing
    /// recorded); `None` when it is no record of the organization.
    fn patient_of(
        &self,
        ctx: &carapace_tenancy::TenantContext,
        entry: Entry,
    ) -> impl Future<Output = Result<Option<PatientId>, ClinicalError>> + Send;

    /// Every patient's timeline, for aggregation only
    /// (`medication.aggregate`, one event naming how many patients).
    fn timelines(
        &self,
        access: &Access,
    ) -> impl Future<Output = Result<Vec<Timeline>, ClinicalError>> + Send;
}

/// One record of a patient's medication history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A medication statement.
    Medication(MedicationId),
    /// A side-effect report.
    SideEffect(SideEffectId),
}

#[cfg(test)]
mod tests;
