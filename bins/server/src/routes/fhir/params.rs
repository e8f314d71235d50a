//! A FHIR query checked once against what the search (or operation)
//! declares: a name it does not declare, or one given more often than it
//! allows, is refused naming that parameter. A search declares the
//! parameters the CapabilityStatement lists for it
//! ([`crate::fhir::capability`]), so what `/metadata` says is what is
//! accepted. A handler then reads the values by name and parses each; it
//! writes no loop over the query of its own.

use carapace_clinical::patient::PatientId;
use uuid::Uuid;

use super::bad;
use crate::fhir::capability::SearchParam;
use crate::http::ApiError;

/// `_count` and `_cursor`: the paging of a search that pages.
pub(crate) const PAGING: &[SearchParam] = &[
    SearchParam {
        name: "_count",
        kind: "number",
        most: 1,
        doc: "page size, 1-100",
    },
    SearchParam {
        name: "_cursor",
        kind: "string",
        most: 1,
        doc: "from the next link",
    },
];

/// A query whose names and counts were checked ([`Params::check`]).
pub(crate) struct Params<'q> {
    pairs: &'q [(String, String)],
}

impl<'q> Params<'q> {
    /// `pairs` checked against the parameters `declared` by `what` (a
    /// search or operation, for the refusal).
    pub(crate) fn check(
        pairs: &'q [(String, String)],
        what: &str,
        declared: &[&[SearchParam]],
    ) -> Result<Self, ApiError> {
        for (name, _) in pairs {
            let known = declared.iter().flat_map(|list| list.iter());
            let Some(most) = known.filter(|p| p.name == name).map(|p| p.most).next() else {
                return Err(bad(
                    name,
                    &format!("not a parameter of {what} here (see /fhir/R4/metadata)"),
                ));
            };
            if pairs.iter().filter(|(n, _)| n == name).count() > most {
                return Err(bad(
                    name,
                    &match most {
                        1 => "give this parameter once".to_owned(),
                        _ => format!("give this parameter {most} times at most"),
                    },
                ));
            }
        }
        Ok(Self { pairs })
    }

    /// The value of `name`, if given (declared once, it stands once).
    pub(crate) fn one(&self, name: &str) -> Option<&'q str> {
        self.all(name).next()
    }

    /// Every value of `name`, in the query's order.
    pub(crate) fn all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'q str> + use<'q, 'n> {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every name-value pair, in the query's order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&'q str, &'q str)> + use<'q> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// The patient a `Patient/<id>` reference (or a bare id) in `name` names.
pub(crate) fn patient_ref(name: &str, value: &str) -> Result<PatientId, ApiError> {
    let raw = value.strip_prefix("Patient/").unwrap_or(value);
    Uuid::parse_str(raw)
        .map(PatientId::from_uuid)
        .map_err(|_| bad(name, "must be Patient/<id>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refused_param(result: Result<Params<'_>, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid(fields)) => {
                fields.first().map(|f| f.field.clone()).unwrap_or_default()
            }
            Err(other) => panic!("not a field refusal: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    const DECLARED: &[&[SearchParam]] = &[
        &[SearchParam {
            name: "patient",
            kind: "reference",
            most: 1,
            doc: "",
        }],
        &[SearchParam {
            name: "date",
            kind: "date",
            most: 2,
            doc: "",
        }],
    ];

    #[test]
    fn an_undeclared_name_is_refused_by_name() {
        let q = query(&[("patient", "x"), ("Patient", "y")]);
        assert_eq!(
            refused_param(Params::check(&q, "a search", DECLARED)),
            "Patient"
        );
    }

    #[test]
    fn a_name_given_more_often_than_declared_is_refused() {
        let q = query(&[("date", "ge2026"), ("date", "le2027"), ("date", "eq2026")]);
        assert_eq!(
            refused_param(Params::check(&q, "a search", DECLARED)),
            "date"
        );
        let q = query(&[("patient", "a"), ("patient", "a")]);
        assert_eq!(
            refused_param(Params::check(&q, "a search", DECLARED)),
            "patient"
        );
    }

    #[test]
    fn declared_names_read_back_in_order() -> Result<(), ApiError> {
        let q = query(&[("date", "ge2026"), ("patient", "p"), ("date", "le2027")]);
        let p = Params::check(&q, "a search", DECLARED)?;
        assert_eq!(p.one("patient"), Some("p"));
        assert_eq!(p.all("date").collect::<Vec<_>>(), ["ge2026", "le2027"]);
        assert_eq!(p.one("_count"), None);
        Ok(())
    }

    #[test]
    fn a_patient_reference_is_an_id_or_refused() {
        let id = Uuid::new_v4();
        assert!(patient_ref("patient", &format!("Patient/{id}")).is_ok());
        assert!(patient_ref("patient", &id.to_string()).is_ok());
        assert!(patient_ref("patient", "Practitioner/1").is_err());
    }
}
