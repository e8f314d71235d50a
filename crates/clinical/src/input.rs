//! Checks every input of the domain shares.

use carapace_phi_crypto::Phi;

use crate::FieldError;

/// `raw` trimmed, when it is 1 to `max` characters and holds no control
/// character; otherwise `None`, with the problem recorded against `field`.
pub(crate) fn text(
    field: &str,
    raw: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = raw.trim();
    let length = value.chars().count();
    if length == 0 || length > max {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
        None
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
        None
    } else {
        Some(value.to_owned())
    }
}

/// [`text`], kept as PHI.
pub(crate) fn phi_text(
    field: &str,
    raw: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Phi<String>> {
    text(field, raw, max, errors).map(Phi::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_bounded_in_characters_and_free_of_control_characters() {
        let mut errors = Vec::new();
        assert_eq!(text("f", "  ä€x ", 3, &mut errors).as_deref(), Some("ä€x"));
        assert!(errors.is_empty());
        assert_eq!(text("f", "   ", 3, &mut errors), None);
        assert_eq!(text("f", "abcd", 3, &mut errors), None);
        assert_eq!(text("f", "a\u{7}b", 3, &mut errors), None);
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "must be 1 to 3 characters",
                "must be 1 to 3 characters",
                "must not contain control characters"
            ]
        );
    }
}
