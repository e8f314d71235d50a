//! FHIR R4 (4.0.1) as Carapace writes and reads it: the JSON of each
//! resource it serves, built from and parsed into the domain's types
//! (`docs/fhir.md` maps each resource to its domain type and permission).
//! Wire format only: the routes under `/fhir/R4`
//! ([`crate::routes::fhir`]) call the same use cases as the REST routes,
//! and nothing here decides who may see what.

pub mod appointment;
pub mod audit_event;
pub mod bundle;
pub mod capability;
pub mod clinical;
pub mod consultation;
pub mod outcome;
pub mod patient;
pub mod practitioner;
mod read;
pub mod task;

use actix_web::HttpRequest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where the FHIR API lives.
pub const BASE_PATH: &str = "/fhir/R4";
/// What every FHIR path starts with.
pub const PREFIX: &str = "/fhir/";
/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";

/// The absolute base URL of the FHIR API for `req`: the configured public
/// URL when there is one, else the request's scheme and host.
pub fn base_url(req: &HttpRequest, public_url: Option<&str>) -> String {
    match public_url {
        Some(url) => format!("{}{BASE_PATH}", url.trim_end_matches('/')),
        None => {
            let info = req.connection_info();
            format!("{}://{}{BASE_PATH}", info.scheme(), info.host())
        }
    }
}

/// A FHIR `instant` (RFC 3339, UTC).
pub fn instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A FHIR `date` (`YYYY-MM-DD`).
pub fn date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The uuid a FHIR id in a URL names (the hyphenated form only); `None`
/// for anything else, which is no resource of Carapace's.
pub fn path_id(raw: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(raw).ok().filter(|_| raw.len() == 36)
}

/// What a `date` search value (`eq`, `ge`, `gt`, `le` or `lt`, then a day
/// or an instant) bounds: `(from, to)`, from inclusive, to exclusive, each
/// when given; a day is its whole UTC day, an instant its `grain` (the
/// precision the searched field is stored with). `None` when the value is
/// not one.
pub fn date_bounds(
    value: &str,
    grain: time::Duration,
) -> Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)> {
    let (prefix, rest) = match value.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let (start, end) = if let Ok(d) = time::Date::parse(rest, day) {
        let start = d.midnight().assume_utc();
        (start, start + time::Duration::days(1))
    } else {
        let t = OffsetDateTime::parse(rest, &Rfc3339).ok()?;
        (t, t + grain)
    };
    Some(match prefix {
        "eq" => (Some(start), Some(end)),
        "ge" => (Some(start), None),
        "gt" => (Some(end), None),
        "lt" => (None, Some(start)),
        _ => (None, Some(end)),
    })
}

/// The weak `ETag` of a version (`W/"<versionId>"`).
pub fn etag(version: impl std::fmt::Display) -> String {
    format!("W/\"{version}\"")
}

/// The version an `If-Match` header names (`W/"3"`, or `"3"`); `None`
/// when it names none in that form.
pub fn if_match_version(value: &str) -> Option<&str> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')?.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_bounds_of_days_and_instants() {
        let day = |d: &str| {
            time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
                .ok()
        };
        let s = time::Duration::seconds(1);
        assert_eq!(
            date_bounds("2026-12-06", s),
            Some((day("2026-12-06"), day("2026-12-07")))
        );
        assert_eq!(
            date_bounds("ge2026-12-06", s),
            Some((day("2026-12-06"), None))
        );
        assert_eq!(
            date_bounds("gt2026-12-06", s),
            Some((day("2026-12-07"), None))
        );
        assert_eq!(
            date_bounds("lt2026-12-06", s),
            Some((None, day("2026-12-06")))
        );
        assert_eq!(
            date_bounds("le2026-12-06", s),
            Some((None, day("2026-12-07")))
        );
        let noon = OffsetDateTime::parse("2026-12-06T12:00:00Z", &Rfc3339).ok();
        assert_eq!(
            date_bounds("gt2026-12-06T12:00:00Z", s),
            Some((noon.map(|t| t + s), None))
        );
        for bad in ["", "ge", "2026-13-01", "xx2026-12-06", "é2026", "tomorrow"] {
            assert_eq!(date_bounds(bad, s), None, "{bad:?}");
        }
        assert!(path_id("0190d5a4-0000-7000-8000-000000000001").is_some());
        assert_eq!(path_id("0190d5a400007000800000000000000 1"), None);
        assert_eq!(path_id("{0190d5a4-0000-7000-8000-000000000001}"), None);
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(if_match_version("W/\"12\""), Some("12"));
        assert_eq!(if_match_version("\"12\""), Some("12"));
        assert_eq!(if_match_version(" W/\"12\" "), Some("12"));
        assert_eq!(if_match_version("12"), None);
        assert_eq!(if_match_version("W/12"), None);
        assert_eq!(etag(7), "W/\"7\"");
    }
}
