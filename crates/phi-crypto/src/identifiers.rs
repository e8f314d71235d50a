//! Identifiers that patterns can find in free text (HIPAA Safe Harbor,
//! §164.514(b)(2), the kinds a pattern can recognize): e-mail addresses,
//! URLs, IP addresses, social security numbers, phone and fax numbers,
//! dates other than a bare year, street addresses, ZIP codes, and medical
//! record, member, account and policy numbers when they are labelled as
//! such. Names cannot be found by a pattern; callers that know the names
//! in context (the assistant's redactor) add them.
//!
//! Used wherever text leaves Carapace or is written down: the prompts sent
//! to an AI provider, and every log line. It errs towards masking: a number
//! that looks like a ZIP code is masked even when it is a count.

use std::sync::OnceLock;

use regex::Regex;

/// A kind of identifier, with the placeholder that replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// An e-mail address.
    Email,
    /// A web address.
    Url,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A US social security number.
    Ssn,
    /// A phone or fax number.
    Phone,
    /// A date with at least a day or a month.
    Date,
    /// A street address.
    StreetAddress,
    /// A ZIP code.
    Zip,
    /// A labelled record, member, account or policy number.
    RecordNumber,
}

impl Kind {
    /// The placeholder that replaces it.
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::Email => "[EMAIL]",
            Self::Url => "[URL]",
            Self::IpAddress => "[IP_ADDRESS]",
            Self::Ssn => "[SSN]",
            Self::Phone => "[PHONE]",
            Self::Date => "[DATE]",
            Self::StreetAddress => "[ADDRESS]",
            Self::Zip => "[ZIP]",
            Self::RecordNumber => "[RECORD_NUMBER]",
        }
    }
}

/// One identifier found: `text[start..end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Byte offset of its start.
    pub start: usize,
    /// Byte offset after its end.
    pub end: usize,
    /// What it is.
    pub kind: Kind,
}

const MONTHS: &str = "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?";

/// The patterns, most specific first (an earlier kind wins an overlap).
fn patterns() -> &'static [(Kind, Regex)] {
    static PATTERNS: OnceLock<Vec<(Kind, Regex)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let sources: Vec<(Kind, String)> = vec![
            (
                Kind::Email,
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}".into(),
            ),
            (Kind::Url, r"(?i)\b(?:https?://|www\.)[^\s<>\x22']+".into()),
            (
                Kind::RecordNumber,
                r"(?i)\b(?:mrn|medical\s+record|member|membership|subscriber|account|acct|policy)(?:\s+(?:id|no|number))?\s*(?:#|no\.|number|id)?\s*[:#]?\s*[A-Z]{0,6}-?\d[A-Z0-9-]*".into(),
            ),
            (Kind::Ssn, r"\b\d{3}-\d{2}-\d{4}\b".into()),
            (
                Kind::IpAddress,
                r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b|\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*\b)?|\b(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}\b".into(),
            ),
            (
                Kind::Date,
                format!(
                    r"(?i)\b\d{{4}}-\d{{1,2}}-\d{{1,2}}\b|\b\d{{1,2}}[/.]\d{{1,2}}[/.]\d{{2,4}}\b|\b(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{MONTHS})\b\.?(?:,?\s+\d{{4}})?"
                ),
            ),
            (
                Kind::Phone,
                r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b|\+\d[\d\s().-]{7,}\d\b".into(),
            ),
            (
                Kind::StreetAddress,
                r"(?i)\b\d{1,6}\s+(?:[a-z]+\s+){1,4}(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|parkway|pkwy|highway|hwy|square|sq)\b\.?".into(),
            ),
            (Kind::Zip, r"\b\d{5}(?:-\d{4})?\b".into()),
        ];
        sources
            .into_iter()
            .filter_map(|(kind, src)| Regex::new(&src).ok().map(|r| (kind, r)))
            .collect()
    })
}

/// Every identifier in `text`, in order, not overlapping (where two
/// patterns overlap, the more specific kind wins).
pub fn find(text: &str) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for (kind, re) in patterns() {
        for m in re.find_iter(text) {
            let (start, end) = (m.start(), m.end());
            if found.iter().all(|f| end <= f.start || start >= f.end) {
                found.push(Found {
                    start,
                    end,
                    kind: *kind,
                });
            }
        }
    }
    found.sort_by_key(|f| f.start);
    found
}

/// `text` with every identifier [`find`] sees replaced by its kind's
/// placeholder.
pub fn mask(text: &str) -> String {
    let found = find(text);
    if found.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in found {
        out.push_str(&text[at..f.start]);
        out.push_str(f.kind.placeholder());
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_in_free_text() {
        let cases = [
            (
                "write to jane.roe+x@example.org today",
                "write to [EMAIL] today",
            ),
            ("see https://portal.example.org/p?id=7 now", "see [URL] now"),
            (
                "from 192.168.10.4 and 2001:db8::1:2",
                "from [IP_ADDRESS] and [IP_ADDRESS]",
            ),
            ("SSN 123-45-6789.", "SSN [SSN]."),
            (
                "call (555) 010-0100 or +1 555 010 0199",
                "call [PHONE] or [PHONE]",
            ),
            ("fax 555.010.0123", "fax [PHONE]"),
            (
                "born 1980-02-03, seen 02/03/2024",
                "born [DATE], seen [DATE]",
            ),
            ("on March 3rd, 2024 and 4 July", "on [DATE] and [DATE]"),
            (
                "lives at 42 Elm Tree Street in 02139",
                "lives at [ADDRESS] in [ZIP]",
            ),
            (
                "MRN: 0071234 and member id M-778",
                "[RECORD_NUMBER] and [RECORD_NUMBER]",
            ),
            ("account #99-1203 closed", "[RECORD_NUMBER] closed"),
        ];
        for (text, masked) in cases {
            assert_eq!(mask(text), masked, "{text}");
        }
    }

    #[test]
    fn plain_text_and_bare_years_stay() {
        for text in [
            "the chart was reviewed in 2024",
            "pool of 10 connections, 3 idle",
            "storage unavailable: Connection refused",
            "placeholders stand for patient details and member accounts",
            "",
        ] {
            assert_eq!(mask(text), text);
        }
    }

    #[test]
    fn overlaps_go_to_the_more_specific_kind() {
        assert_eq!(mask("mail a.b@c-d.example.com"), "mail [EMAIL]");
        assert_eq!(
            find("ssn 123-45-6789")
                .iter()
                .map(|f| f.kind)
                .collect::<Vec<_>>(),
            vec![Kind::Ssn]
        );
    }
}
