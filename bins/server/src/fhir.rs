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
pub mod outcome;
pub mod patient;
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
    fn if_match_forms() {
        assert_eq!(if_match_version("W/\"12\""), Some("12"));
        assert_eq!(if_match_version("\"12\""), Some("12"));
        assert_eq!(if_match_version(" W/\"12\" "), Some("12"));
        assert_eq!(if_match_version("12"), None);
        assert_eq!(if_match_version("W/12"), None);
        assert_eq!(etag(7), "W/\"7\"");
    }
}
