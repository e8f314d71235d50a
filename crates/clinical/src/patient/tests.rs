use super::*;

#[test]
fn page_limits() {
    assert_eq!(PageLimit::parse(None).map(PageLimit::get).ok(), Some(50));
    assert_eq!(PageLimit::parse(Some(1)).map(PageLimit::get).ok(), Some(1));
    assert_eq!(
        PageLimit::parse(Some(100)).map(PageLimit::get).ok(),
        Some(100)
    );
    assert!(PageLimit::parse(Some(0)).is_err());
    assert!(PageLimit::parse(Some(101)).is_err());
    assert_eq!(
        PageLimit::parse_text(Some("7")).map(PageLimit::get).ok(),
        Some(7)
    );
    assert!(PageLimit::parse_text(Some("abc")).is_err());
    assert!(PageLimit::parse_text(Some("-1")).is_err());
    assert!(PageLimit::parse_text(Some("99999999999")).is_err());
}

#[test]
fn break_glass_reasons_are_real_text() {
    assert!(break_glass_reason("unconscious in ER, no relatives reachable").is_ok());
    assert!(break_glass_reason("too short").is_err());
    assert!(break_glass_reason(&"x".repeat(1001)).is_err());
    assert!(break_glass_reason("                         ").is_err());
    assert!(
        format!(
            "{:?}",
            break_glass_reason("unconscious in ER, no relatives reachable")
        )
        .contains("redacted")
    );
}

#[test]
fn listings_show_nothing_unless_told() {
    assert_eq!(PatientQuery::default().visibility, Visibility::Nothing);
}

#[test]
fn patient_debug_shows_no_phi() {
    let d = PatientInput {
        given_name: "Jane".into(),
        family_name: "Roe".into(),
        birth_date: "1980-02-03".into(),
        member_id: Some("M-778".into()),
        phone: Some("+1 555 0100".into()),
        email: Some("jane@example.org".into()),
        sex: None,
    }
    .parse(time::macros::date!(2026 - 01 - 01))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let printed = format!("{d:?}");
    for secret in ["Jane", "Roe", "1980", "M-778", "555", "jane@"] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

#[test]
fn patch_applies_only_what_it_names() {
    let mut d = PatientInput {
        given_name: "Jane".into(),
        family_name: "Roe".into(),
        birth_date: "1980-02-03".into(),
        member_id: Some("M-1".into()),
        phone: None,
        email: None,
        sex: None,
    }
    .parse(time::macros::date!(2026 - 01 - 01))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let patch = PatientPatch {
        family_name: Some(Phi::new("Doe".into())),
        member_id: Some(None),
        ..PatientPatch::default()
    };
    patch.apply(&mut d);
    assert_eq!(d.given_name.expose_phi(), "Jane");
    assert_eq!(d.family_name.expose_phi(), "Doe");
    assert_eq!(d.member_id, None);
}
