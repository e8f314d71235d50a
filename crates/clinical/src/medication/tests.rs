use super::*;
use time::macros::date;

const TODAY: Date = date!(2026 - 12 - 01);

fn med(start: &str, stop: Option<&str>) -> Result<MedicationDetails, ClinicalError> {
    MedicationInput {
        drug_name: "Lisinopril".into(),
        dose: "10 mg".into(),
        schedule: "once daily".into(),
        started_on: start.into(),
        stopped_on: stop.map(Into::into),
    }
    .parse(TODAY)
}

fn fields(r: Result<impl std::fmt::Debug, ClinicalError>) -> Vec<String> {
    match r {
        Err(ClinicalError::Invalid(e)) => e.into_iter().map(|e| e.field).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn medication_dates_in_the_wrong_order_are_refused() {
    assert!(med("2026-11-01", Some("2026-11-20")).is_ok());
    assert_eq!(
        fields(med("2026-11-20", Some("2026-11-01"))),
        vec!["stopped_on"]
    );
    assert_eq!(fields(med("2026-13-01", None)), vec!["started_on"]);
    assert_eq!(fields(med("2029-01-01", None)), vec!["started_on"]);
    let empty = MedicationInput::default().parse(TODAY);
    assert_eq!(
        fields(empty),
        vec!["drug_name", "dose", "schedule", "started_on"]
    );
}

#[test]
fn side_effects_need_a_known_severity_and_a_past_onset() {
    let ok = SideEffectInput {
        symptom: "Dry cough".into(),
        severity: "mild".into(),
        onset_on: "2026-11-05".into(),
    };
    assert!(ok.clone().parse(TODAY).is_ok());
    let bad = SideEffectInput {
        severity: "awful".into(),
        onset_on: "2026-12-24".into(),
        ..ok
    };
    assert_eq!(fields(bad.parse(TODAY)), vec!["severity", "onset_on"]);
}

fn timeline(starts: &[(&str, Date)], onsets: &[(&str, Date)]) -> Timeline {
    Timeline {
        starts: starts.iter().map(|(d, t)| (normalise(d), *t)).collect(),
        onsets: onsets.iter().map(|(s, t)| (normalise(s), *t)).collect(),
    }
}

#[test]
fn symptoms_count_within_the_window_after_a_start() {
    let t = timeline(
        &[("Lisinopril", date!(2026 - 11 - 01))],
        &[
            ("Dry cough", date!(2026 - 11 - 05)),
            ("dry cough ", date!(2026 - 11 - 10)),
            ("Headache", date!(2026 - 10 - 30)),
            ("Rash", date!(2026 - 11 - 20)),
        ],
    );
    let w = Window::parse(Some(14)).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        patient_correlations(&t, w),
        vec![Correlation {
            drug: "lisinopril".into(),
            symptom: "dry cough".into(),
            count: Some(2)
        }]
    );
    assert!(Window::parse(Some(0)).is_err() && Window::parse(Some(366)).is_err());
}

#[test]
fn organization_counts_patients_and_withholds_small_cells() {
    let start = date!(2026 - 11 - 01);
    let coughing = timeline(
        &[("lisinopril", start)],
        &[("cough", start + Duration::days(3))],
    );
    let rash = timeline(
        &[("amoxicillin", start)],
        &[("rash", start + Duration::days(1))],
    );
    let mut all = vec![coughing.clone(); 11];
    all.extend(vec![rash; 10]);
    // A patient with two reports of one pair still counts once.
    all.push(timeline(
        &[("lisinopril", start)],
        &[("cough", start), ("cough", start + Duration::days(2))],
    ));
    let w = Window::parse(None).unwrap_or_else(|e| panic!("{e:?}"));
    let out = organization_correlations(&all, w);
    assert_eq!(
        out,
        vec![
            Correlation {
                drug: "lisinopril".into(),
                symptom: "cough".into(),
                count: Some(12)
            },
            // Ten patients: not even the pair is named.
            Correlation {
                drug: "other".into(),
                symptom: "other".into(),
                count: None
            },
        ]
    );
    assert!(!format!("{out:?}").contains("amoxicillin"));
    // Eleven patients behind rare pairs together: the other row counts them.
    let mut all = vec![coughing; 11];
    for n in 0..11 {
        let drug = format!("rarezumab {n}");
        all.push(timeline(&[(drug.as_str(), start)], &[("rash", start)]));
    }
    let out = organization_correlations(&all, w);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[1].drug.as_str(), out[1].symptom.as_str(), out[1].count),
        ("other", "other", Some(11))
    );
    // A drug and a symptom both written "Other" are that row too, not a
    // second `other`/`other` row beside it.
    let mut all = vec![timeline(&[("lisinopril", start)], &[("cough", start)]); 11];
    all.extend(vec![
        timeline(&[("Other", start)], &[("other.", start)]);
        12
    ]);
    all.push(timeline(&[("rarezumab", start)], &[("rash", start)]));
    let out = organization_correlations(&all, w);
    let rows: Vec<(&str, &str, Option<u32>)> = out
        .iter()
        .map(|c| (c.drug.as_str(), c.symptom.as_str(), c.count))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("lisinopril", "cough", Some(11)),
            ("other", "other", Some(13))
        ]
    );
    assert_eq!(suppress(10), None);
    assert_eq!(suppress(11), Some(11));
}

#[test]
fn records_do_not_print_their_phi() {
    let m = med("2026-11-01", None).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!format!("{m:?}").contains("Lisinopril"));
}
